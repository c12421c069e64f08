//! docker-compose.yml (no Docker engine here): its services, ports and environment match what
//! the code and the README expect.

use serde_norway::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn compose() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/docker-compose.yml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn env<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing in {service:?}"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_stack_has_the_seed_services_modernised() {
    let compose = compose();
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().filter_map(Value::as_str).collect();
    assert_eq!(
        names,
        ["kafka", "postgres", "producer", "pipelines", "dashboard"]
    );

    // Apache Kafka's official image in KRaft mode: no ZooKeeper anywhere.
    let kafka = &compose["services"]["kafka"];
    assert!(
        kafka["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka:")
    );
    assert_eq!(env(kafka, "KAFKA_PROCESS_ROLES"), "broker,controller");
    assert!(
        !std::fs::read_to_string(format!("{ROOT}/docker-compose.yml"))
            .unwrap()
            .contains("KAFKA_ZOOKEEPER_CONNECT")
    );

    // The topic's log on the named volume, where the checkpoints' offsets stay valid.
    let log_dirs = env(kafka, "KAFKA_LOG_DIRS");
    assert!(
        strings(&kafka["volumes"]).contains(&format!("kafka-data:{log_dirs}").as_str()),
        "KAFKA_LOG_DIRS ({log_dirs}) is not the mounted kafka-data volume"
    );

    // PostgreSQL with a named volume and a health check.
    let postgres = &compose["services"]["postgres"];
    assert!(strings(&postgres["volumes"])[0].starts_with("postgres-data:"));
    assert!(compose["volumes"].get("postgres-data").is_some());
    assert!(postgres["healthcheck"]["test"].is_sequence());
    let url = format!(
        "postgres://{}:{}@postgres:5432/{}",
        env(postgres, "POSTGRES_USER"),
        env(postgres, "POSTGRES_PASSWORD"),
        env(postgres, "POSTGRES_DB")
    );

    // The sluice services are built from this repository and configured like the code reads.
    // … as one image, shared.
    for name in ["producer", "pipelines", "dashboard"] {
        let service = &compose["services"][name];
        assert_eq!(service["build"].as_str(), Some("."), "{name}");
        assert_eq!(service["image"].as_str(), Some("sluice:local"), "{name}");
    }
    assert!(std::path::Path::new(&format!("{ROOT}/Dockerfile")).exists());
    let producer = &compose["services"]["producer"];
    assert_eq!(
        env(producer, sluice_connectors::kafka::BOOTSTRAP_ENV),
        "kafka:9092"
    );
    assert_eq!(
        env(producer, "BINANCE_WS_URL"),
        sluice_connectors::binance::MINI_TICKER_URL
    );
    let pipelines = &compose["services"]["pipelines"];
    assert_eq!(env(pipelines, "KAFKA_BOOTSTRAP"), "kafka:9092");
    assert_eq!(env(pipelines, "DATABASE_URL"), url);
    assert_eq!(env(pipelines, "SINK_CONNECTOR"), "postgres");
    let command = strings(&pipelines["command"]);
    assert_eq!(command[0], "run");
    for file in &command[1..] {
        assert!(
            std::path::Path::new(&format!("{ROOT}/{file}")).exists(),
            "{file}"
        );
    }
    // Its metrics and health endpoint, reachable from other containers and the host's
    // loopback, and its health check asking readiness there.
    let listen = env(pipelines, "SLUICE_HTTP_LISTEN");
    let port = listen.rsplit(':').next().unwrap();
    assert_eq!(listen, format!("0.0.0.0:{port}"));
    // `docker compose up --scale pipelines=3`: a range of host ports (one per replica), every
    // query a worker of its consumer group, the checkpoints on a volume all replicas share,
    // and partitions enough for the replicas.
    assert_eq!(
        strings(&pipelines["ports"]),
        [format!(
            "127.0.0.1:{port}-{}:{port}",
            port.parse::<u16>().unwrap() + 5
        )]
    );
    assert_eq!(env(pipelines, "DISTRIBUTION"), "kafka_partitions");
    assert!(strings(&pipelines["volumes"])[0].starts_with("checkpoints:"));
    assert!(env(pipelines, "CHECKPOINT_DIR").starts_with("/var/lib/sluice/checkpoints"));
    assert_eq!(env(kafka, "KAFKA_NUM_PARTITIONS"), "6");
    for file in strings(&pipelines["command"]).iter().skip(1) {
        let query = std::fs::read_to_string(format!("{ROOT}/{file}")).unwrap();
        assert!(
            query.contains("SET distribution = '${DISTRIBUTION:-spark}'"),
            "{file}"
        );
    }
    assert_eq!(
        strings(&pipelines["healthcheck"]["test"]),
        [
            "CMD",
            "sluice",
            "probe",
            &format!("http://127.0.0.1:{port}/readyz")
        ]
    );
    // The topic the producer writes is the one the queries read.
    let produced = strings(&producer["command"]);
    let topic = produced[produced.iter().position(|a| *a == "--topic").unwrap() + 1];
    assert_eq!(env(pipelines, "TICKS_TOPIC"), topic);
    let query = std::fs::read_to_string(format!("{ROOT}/queries/projet_bdcc.sql")).unwrap();
    assert!(query.contains(&format!("'${{TICKS_TOPIC:-{topic}}}'")));

    // The dashboard: port 8501 on the host's loopback, the same database.
    let dashboard = &compose["services"]["dashboard"];
    assert_eq!(strings(&dashboard["ports"]), ["127.0.0.1:8501:8501"]);
    assert_eq!(
        strings(&dashboard["healthcheck"]["test"]),
        ["CMD", "sluice", "probe", "http://127.0.0.1:8501/api/status"]
    );
    assert_eq!(env(dashboard, "DATABASE_URL"), url);

    // The README tells how to start it.
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    assert!(readme.contains("docker compose up --build"));
}
