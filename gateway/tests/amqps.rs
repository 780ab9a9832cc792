//! AMQPS to the broker: a private RabbitMQ node with a TLS listener only (its own node name,
//! ports and data directory), the broker's CA from config and the URL from a file. In a test
//! binary of its own: the node's start takes CPU the timing-sensitive tests should not share.

mod support;

use std::time::Duration;

use support::World;
use support::pki::Ca;
use wingspan_sim::samples;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_to_a_broker_whose_certificate_the_configured_ca_issued() {
    let world = World::new("amqps", false).await;
    let ca = Ca::new("broker CA");
    let broker_dir = world.dir.join("broker");
    std::fs::create_dir_all(&broker_dir).expect("dir");
    let server = ca.server();
    std::fs::write(broker_dir.join("server.pem"), &server.cert).expect("write");
    std::fs::write(broker_dir.join("server.key"), &server.key).expect("write");
    let broker = support::private_broker::PrivateBroker::start_tls(&broker_dir);
    // The URL, credentials and all, from a file; the broker's CA from config.
    let url_file = world.dir.join("amqp-url");
    std::fs::write(
        &url_file,
        format!("amqps://guest:guest@127.0.0.1:{}/%2f\n", broker.tls_port),
    )
    .expect("write");
    let ca_file = world.dir.join("broker-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write");
    world.rewrite(|t| {
        t.replace(
            "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
            &format!(
                "url_file = {:?}\nca_file = {:?}",
                url_file.display().to_string(),
                ca_file.display().to_string()
            ),
        )
    });
    assert!(
        std::fs::read_to_string(&world.config_file)
            .expect("config")
            .contains("url_file"),
        "the broker URL was not replaced"
    );
    let (gateway, base) = world.start_gateway().await;
    let (status, _) =
        support::post(&reqwest::Client::new(), &base, &samples::material_submit(1)).await;
    assert_eq!(status, 202);
    assert!(
        support::eventually(Duration::from_secs(20), || world
            .partner("police")
            .accepted_count()
            == 1)
        .await,
        "not delivered through the AMQPS broker"
    );
    gateway.shutdown().await;

    // A broker certificate from a CA the config does not name: no session, nothing accepted.
    let stranger = Ca::new("another CA");
    std::fs::write(&ca_file, stranger.pem()).expect("write");
    let gateway = wingspan::Gateway::start(&world.load(), wingspan::GatewayOptions::default())
        .await
        .expect("start");
    assert!(
        !gateway.wait_ready(Duration::from_secs(3)).await,
        "connected to a broker whose certificate no configured CA issued"
    );
    gateway.shutdown().await;
    drop(broker);
    world.cleanup().await;
}
