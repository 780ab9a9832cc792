//! A mapping program: VRL source compiled once when the config loads, run once per message.
//!
//! What a program may call is an allow-list of VRL's standard library ([`ALLOWED`]): type
//! checks and coercions, strings, objects, arrays, closures over input collections, time
//! parsing and formatting. Left out: everything that reads a clock or randomness (`now`,
//! `uuid_v4`, `random_*`), logs, touches the environment, the network or the system,
//! decompresses (a bomb), or builds a collection from a number (`range`). VRL has no loops
//! and no user-defined functions; each run is also stopped after a step budget (one step per
//! expression evaluated), so time per message is bounded whatever the input.
//!
//! Runtime errors never carry the submitted values: a failing expression is reported by its
//! place in the program and its text (the operator's words), and an `abort` message is
//! repeated only when it is a string literal of the program.

use std::ops::ControlFlow;

use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{ExpressionError, Function, Program as VrlProgram, TargetValue, TimeZone};
use vrl::diagnostic::{DiagnosticList, Span};
use vrl::value::{Secrets, Value as VrlValue};

/// The standard-library functions a mapping program may call.
pub const ALLOWED: &[&str] = &[
    "abs",
    "append",
    "array",
    "assert",
    "assert_eq",
    "bool",
    "ceil",
    "chunks",
    "compact",
    "contains",
    "contains_all",
    "del",
    "downcase",
    "encode_json",
    "ends_with",
    "exists",
    "filter",
    "find",
    "flatten",
    "float",
    "floor",
    "for_each",
    "format_int",
    "format_number",
    "format_timestamp",
    "from_entries",
    "get",
    "includes",
    "int",
    "is_array",
    "is_boolean",
    "is_empty",
    "is_float",
    "is_integer",
    "is_json",
    "is_null",
    "is_nullish",
    "is_object",
    "is_string",
    "is_timestamp",
    "join",
    "keys",
    "length",
    "map_keys",
    "map_values",
    "match",
    "merge",
    "mod",
    "object",
    "object_from_array",
    "parse_float",
    "parse_int",
    "parse_json",
    "parse_timestamp",
    "pop",
    "push",
    "remove",
    "replace",
    "round",
    "set",
    "slice",
    "split",
    "starts_with",
    "string",
    "strip_whitespace",
    "strlen",
    "timestamp",
    "to_bool",
    "to_entries",
    "to_float",
    "to_int",
    "to_string",
    "truncate",
    "unique",
    "unnest",
    "upcase",
    "values",
    "zip",
];

/// Steps one run may take unless the adapter says otherwise: far above what a mapping of a
/// partner document needs (a few thousand), far below a second.
pub const DEFAULT_MAX_STEPS: u64 = 1_000_000;

fn functions() -> Vec<Box<dyn Function>> {
    vrl::stdlib::all()
        .into_iter()
        .filter(|f| ALLOWED.contains(&f.identifier()))
        .collect()
}

/// A line and column (both from 1) in a program's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

fn position(source: &str, offset: usize) -> Position {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position { line, column }
}

/// One problem found when compiling a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileProblem {
    pub at: Position,
    pub message: String,
}

/// Why a run did not produce a value. Safe to show: never the input's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The program called `abort` (with its literal message, if it gave one).
    Aborted {
        at: Position,
        message: Option<String>,
    },
    /// An expression failed (a fallible call with `!`, a type mismatch): where, and the
    /// expression as written in the program.
    Failed { at: Position, expression: String },
    /// The step budget ran out.
    TooLong { steps: u64 },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Aborted {
                at,
                message: Some(m),
            } => write!(f, "{m} (abort at {at})"),
            Self::Aborted { at, message: None } => write!(f, "aborted at {at}"),
            Self::Failed { at, expression } => {
                write!(f, "the expression `{expression}` at {at} failed")
            }
            Self::TooLong { steps } => write!(f, "stopped after {steps} steps"),
        }
    }
}

/// A compiled mapping program.
pub struct Program {
    source: String,
    program: VrlProgram,
    max_steps: u64,
    /// Time functions read and write UTC unless a program names a zone.
    timezone: TimeZone,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("bytes", &self.source.len())
            .field("max_steps", &self.max_steps)
            .finish()
    }
}

fn problems(source: &str, list: &DiagnosticList) -> Vec<CompileProblem> {
    list.errors()
        .into_iter()
        .map(|d| {
            let primary = d.labels.iter().find(|l| l.primary).or(d.labels.first());
            let at = primary.map_or(Position { line: 1, column: 1 }, |l| {
                position(source, l.span.start())
            });
            let mut message = d.message.clone();
            if let Some(l) = primary
                && !l.message.is_empty()
                && l.message != d.message
            {
                message.push_str(": ");
                message.push_str(&l.message);
            }
            CompileProblem { at, message }
        })
        .collect()
}

impl Program {
    /// Compile `source`; every error with its line and column.
    pub fn compile(source: &str, max_steps: u64) -> Result<Self, Vec<CompileProblem>> {
        let fns = functions();
        match vrl::compiler::compile(source, &fns) {
            Ok(result) => Ok(Self {
                source: source.to_owned(),
                program: result.program,
                max_steps,
                timezone: TimeZone::try_from("UTC".to_owned()).unwrap_or_default(),
            }),
            Err(list) => Err(problems(source, &list)),
        }
    }

    fn excerpt(&self, span: Span) -> String {
        let text = self.source.get(span.range()).unwrap_or("").trim();
        let mut one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() > 80 {
            one_line = one_line.chars().take(77).collect::<String>() + "...";
        }
        one_line
    }

    /// Whether `message` is written in the program as a string literal.
    fn literal(&self, message: &str) -> bool {
        !message.is_empty()
            && !message.contains('"')
            && !message.contains('\\')
            && self.source.contains(&format!("\"{message}\""))
    }

    /// Run on `input` (the program's `.`); the result is `.` afterwards.
    pub fn run(&self, input: VrlValue) -> Result<VrlValue, RunError> {
        let mut target = TargetValue {
            value: input,
            metadata: VrlValue::Object(Default::default()),
            secrets: Secrets::default(),
        };
        let mut steps = 0u64;
        let max = self.max_steps;
        let mut control = || {
            steps += 1;
            if steps > max {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        // One runtime per thread, emptied before each run: its variable table keeps its
        // allocation from one message to the next.
        thread_local! {
            static RUNTIME: std::cell::RefCell<Runtime> = std::cell::RefCell::new(Runtime::default());
        }
        let resolved = RUNTIME.with(|cell| match cell.try_borrow_mut() {
            Ok(mut runtime) => {
                runtime.clear();
                let r = runtime.resolve_with_control(
                    &mut target,
                    &self.program,
                    &self.timezone,
                    &mut control,
                );
                runtime.clear();
                r
            }
            // Not reentrant in practice (a program cannot call another); a fresh one if it were.
            Err(_) => Runtime::default().resolve_with_control(
                &mut target,
                &self.program,
                &self.timezone,
                &mut control,
            ),
        });
        match resolved {
            Ok(_) => Ok(target.value),
            Err(Terminate::Interrupted) => Err(RunError::TooLong { steps: max }),
            Err(Terminate::Abort(e) | Terminate::Error(e)) => Err(self.error(e)),
        }
    }

    fn error(&self, e: ExpressionError) -> RunError {
        let at = |span: Span| position(&self.source, span.start());
        match e {
            ExpressionError::Abort { span, message } => RunError::Aborted {
                at: at(span),
                message: message.filter(|m| self.literal(m)),
            },
            ExpressionError::Error { labels, .. } => {
                let span = labels
                    .iter()
                    .find(|l| l.primary)
                    .or(labels.first())
                    .map(|l| l.span)
                    .unwrap_or_default();
                RunError::Failed {
                    at: at(span),
                    expression: self.excerpt(span),
                }
            }
            ExpressionError::Fallible { span }
            | ExpressionError::Missing { span, .. }
            | ExpressionError::Return { span, .. }
            | ExpressionError::Break { span } => RunError::Failed {
                at: at(span),
                expression: self.excerpt(span),
            },
            ExpressionError::Interrupted => RunError::TooLong {
                steps: self.max_steps,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allowed_function_exists_and_nothing_else_is_callable() {
        let have: Vec<&str> = functions().iter().map(|f| f.identifier()).collect();
        for name in ALLOWED {
            assert!(have.contains(name), "{name} is not in VRL's stdlib");
        }
        assert_eq!(have.len(), ALLOWED.len());
        for banned in [
            "now",
            "uuid_v4",
            "random_int",
            "log",
            "get_env_var",
            "range",
            "decode_gzip",
        ] {
            let problems = Program::compile(&format!(". = {banned}()"), 10).expect_err(banned);
            assert!(
                problems[0].message.contains("undefined function"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn compile_errors_have_line_and_column() {
        let problems = Program::compile(".a = 1\n.b = string(.c)\n", 100).expect_err("fallible");
        assert_eq!(problems[0].at.line, 2, "{problems:?}");
        assert!(problems[0].at.column > 1);
    }

    #[test]
    fn runtime_errors_never_repeat_input_values() {
        let p = Program::compile(
            "x = string!(.secret_number)\nif .name == \"\" { abort \"empty name\" }\nabort \"bad name \" + string!(.name)",
            1000,
        )
        .expect("compiles");
        let input = |v: serde_json::Value| VrlValue::from(v);
        let e = p
            .run(input(
                serde_json::json!({"secret_number": 320411, "name": "Li"}),
            ))
            .expect_err("not a string");
        let shown = e.to_string();
        assert!(!shown.contains("320411"), "{shown}");
        assert!(
            shown.contains("string!(.secret_number)") && shown.contains("1:5"),
            "{shown}"
        );
        let e = p
            .run(input(serde_json::json!({"secret_number": "s", "name": ""})))
            .expect_err("abort");
        assert_eq!(e.to_string(), "empty name (abort at 2:18)");
        let e = p
            .run(input(
                serde_json::json!({"secret_number": "s", "name": "Li Wenjing"}),
            ))
            .expect_err("abort with a value");
        assert!(!e.to_string().contains("Li Wenjing"), "{e}");
    }

    #[test]
    fn the_step_budget_stops_a_run() {
        let p = Program::compile(".out = map_values(array!(.items)) -> |v| { v }", 1_000)
            .expect("compiles");
        let items: Vec<i64> = (0..10_000).collect();
        let e = p
            .run(VrlValue::from(serde_json::json!({ "items": items })))
            .expect_err("too long");
        assert_eq!(e, RunError::TooLong { steps: 1_000 });
        let small: Vec<i64> = (0..10).collect();
        p.run(VrlValue::from(serde_json::json!({ "items": small })))
            .expect("within budget");
    }
}
