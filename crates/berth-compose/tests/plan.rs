//! `plan` end to end: a realistic three-service stack, the repository's own deployment file
//! (refused for its host access), and each planning rule through the public API.
#![allow(clippy::unwrap_used, reason = "a test: a panic is a failed test with its message")]

use std::collections::BTreeMap;
use std::time::Duration;

use berth_compose::{ComposeError, Condition, Healthcheck, RestartPolicy, StackPlan, VolumeMount, plan};

fn variables(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn plan_ok(yaml: &str) -> StackPlan {
    plan(yaml, &BTreeMap::new()).unwrap()
}

const THREE_SERVICES: &str = r#"
x-defaults: &defaults
  restart: unless-stopped

services:
  web:
    <<: *defaults
    image: ${REGISTRY:-docker.io}/library/nginx:1.27
    command: nginx -g "daemon off;"
    ports:
      - "8080"
      - "127.0.0.1:${WEB_PORT:-9000}:80"
    environment:
      - API_URL=http://api:${API_PORT:-3000}
      - MODE=${MODE:?set MODE to dev or prod}
      - TOKEN
    labels:
      aenv.main: "true"
      team: web
    depends_on:
      api:
        condition: service_healthy
  api:
    <<: *defaults
    image: example/api:${API_TAG-latest}
    entrypoint: ["/app/api", "--port", "3000"]
    environment:
      DATABASE_URL: postgres://app:${DB_PASSWORD}@db:5432/app
      WORKERS: 4
      DEBUG: false
      TOKEN:
    healthcheck:
      test: curl -fsS http://localhost:3000/health
      interval: 1m30s
      timeout: 5s
      retries: 3
      start_period: 500ms
    depends_on:
      - db
    deploy:
      resources:
        limits:
          cpus: 0.5
          memory: 512M
    working_dir: /app
    user: 1000
  db:
    image: postgres:17
    environment:
      POSTGRES_PASSWORD: $DB_PASSWORD
      POSTGRES_DB: app
    volumes:
      - db-data:/var/lib/postgresql/data
      - type: volume
        source: db-backups
        target: /backups
        read_only: true
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U app"]
    restart: on-failure:3

volumes:
  db-data:
  db-backups: {}
"#;

#[test]
fn a_three_service_stack_is_planned_end_to_end() {
    let plan = plan(
        THREE_SERVICES,
        &variables(&[
            ("MODE", "prod"),
            ("DB_PASSWORD", "s3cret"),
            ("TOKEN", "t0k"),
            ("API_TAG", ""),
        ]),
    )
    .unwrap();

    assert_eq!(plan.main_service, "web");
    assert_eq!(plan.volumes, ["db-data", "db-backups"]);
    let names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "api", "web"], "start order follows depends_on");

    let db = &plan.services[0];
    assert_eq!(db.image, "postgres:17");
    assert_eq!(db.environment["POSTGRES_PASSWORD"], "s3cret");
    assert_eq!(
        db.volumes,
        [
            VolumeMount {
                volume: "db-data".into(),
                container_path: "/var/lib/postgresql/data".into(),
                read_only: false
            },
            VolumeMount {
                volume: "db-backups".into(),
                container_path: "/backups".into(),
                read_only: true
            },
        ]
    );
    assert_eq!(db.restart, Some(RestartPolicy::OnFailure(Some(3))));
    assert_eq!(
        db.healthcheck.as_ref().unwrap().test,
        ["CMD-SHELL", "pg_isready -U app"]
    );

    let api = &plan.services[1];
    // `${API_TAG-latest}` keeps an empty value: only an unset variable takes the default.
    assert_eq!(api.image, "example/api:");
    assert_eq!(
        api.entrypoint.as_deref(),
        Some(&["/app/api".to_string(), "--port".into(), "3000".into()][..])
    );
    assert_eq!(api.command, None);
    assert_eq!(api.environment["DATABASE_URL"], "postgres://app:s3cret@db:5432/app");
    assert_eq!(api.environment["WORKERS"], "4");
    assert_eq!(api.environment["DEBUG"], "false");
    assert_eq!(
        api.environment["TOKEN"], "t0k",
        "a value-less entry takes the caller's variable"
    );
    assert_eq!(
        api.healthcheck,
        Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "curl -fsS http://localhost:3000/health".into()],
            interval: Some(Duration::from_secs(90)),
            timeout: Some(Duration::from_secs(5)),
            retries: Some(3),
            start_period: Some(Duration::from_millis(500)),
        })
    );
    assert_eq!(api.depends_on.len(), 1);
    assert_eq!(api.depends_on[0].service, "db");
    assert_eq!(api.depends_on[0].condition, Condition::Started);
    assert_eq!(api.cpu_millis, Some(500));
    assert_eq!(api.memory_bytes, Some(512 * 1024 * 1024));
    assert_eq!(api.working_dir.as_deref(), Some("/app"));
    assert_eq!(api.user.as_deref(), Some("1000"));
    assert_eq!(
        api.restart,
        Some(RestartPolicy::UnlessStopped),
        "merged from the x-defaults anchor"
    );

    let web = &plan.services[2];
    assert_eq!(web.image, "docker.io/library/nginx:1.27");
    assert_eq!(
        web.command.as_deref(),
        Some(&["nginx".to_string(), "-g".into(), "daemon off;".into()][..])
    );
    assert_eq!(web.ports, [8080, 80]);
    assert_eq!(web.environment["API_URL"], "http://api:3000");
    assert_eq!(web.environment["MODE"], "prod");
    assert_eq!(web.environment["TOKEN"], "t0k");
    assert_eq!(web.labels["team"], "web");
    assert_eq!(web.depends_on[0].service, "api");
    assert_eq!(web.depends_on[0].condition, Condition::Healthy);
    assert_eq!(web.cpu_millis, None);
    assert_eq!(web.healthcheck, None);
}

#[test]
fn a_required_variable_left_unset_is_named() {
    let error = plan(THREE_SERVICES, &variables(&[("DB_PASSWORD", "x")])).unwrap_err();
    assert!(matches!(&error, ComposeError::RequiredVariable { variable, .. } if variable == "MODE"));
    let message = error.to_string();
    assert!(message.contains("services.web.environment[1]"), "{message}");
    assert!(message.contains("set MODE to dev or prod"), "{message}");
    assert!(message.starts_with("line 15 "), "{message}");
}

#[test]
fn the_repositorys_own_deployment_is_refused_for_its_host_access() {
    let yaml = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/compose/docker-compose.yml"
    ));
    let error = plan(yaml, &BTreeMap::new()).unwrap_err();
    let ComposeError::Unsupported { paths } = &error else {
        panic!("expected the unsupported-keys refusal, got {error:?}");
    };
    assert_eq!(
        paths,
        &[
            "services.berth.group_add",
            "services.berth.volumes[0] (bind mount of /var/run/docker.sock)",
            "services.berth.read_only",
            "services.berth.tmpfs",
            "services.berth.cap_drop",
            "services.berth.security_opt",
            "services.berth.stop_grace_period",
            "services.prometheus.volumes[0] (bind mount of ./prometheus/prometheus.yml)",
            "services.grafana.volumes[0] (bind mount of ./grafana/provisioning)",
            "services.grafana.volumes[1] (bind mount of ./grafana/dashboards)",
        ]
    );
    let message = error.to_string();
    assert!(
        message.starts_with(
            "compose file uses keys berth does not support: services.berth.group_add, services.berth.volumes[0] (bind mount of /var/run/docker.sock), "
        ),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn the_main_service_is_the_labelled_one_in_list_form() {
    let plan = plan_ok("services:\n  a:\n    image: x\n  b:\n    image: y\n    labels: [\"aenv.main=true\", other]\n");
    assert_eq!(plan.main_service, "b");
    assert_eq!(plan.services[1].labels["other"], "");
}

#[test]
fn the_main_service_defaults_to_the_first_declared() {
    // Names out of alphabetical order show declaration order is kept.
    let plan = plan_ok("services:\n  zeta:\n    image: x\n  alpha:\n    image: y\n    labels: {aenv.main: false}\n");
    assert_eq!(plan.main_service, "zeta");
    let names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"]);
}

#[test]
fn a_boolean_main_label_counts() {
    let plan = plan_ok("services:\n  a:\n    image: x\n  b:\n    image: y\n    labels: {aenv.main: true}\n");
    assert_eq!(plan.main_service, "b");
}

#[test]
fn two_main_services_are_refused() {
    let yaml = "services:\n  a:\n    image: x\n    labels: [aenv.main=true]\n  b:\n    image: y\n    labels: [aenv.main=true]\n";
    assert_eq!(
        plan(yaml, &BTreeMap::new()).unwrap_err(),
        ComposeError::SeveralMainServices {
            services: vec!["a".into(), "b".into()]
        }
    );
}

#[test]
fn a_missing_image_names_the_service() {
    for yaml in [
        "services:\n  web:\n    command: [x]\n",
        "services:\n  web:\n",
        "services:\n  web:\n    image: ''\n",
    ] {
        let error = plan(yaml, &BTreeMap::new()).unwrap_err();
        assert_eq!(error, ComposeError::MissingImage { service: "web".into() }, "{yaml}");
    }
    let message = ComposeError::MissingImage { service: "web".into() }.to_string();
    assert!(message.contains("service `web` has no `image`"), "{message}");
}

#[test]
fn an_unknown_dependency_names_both_services() {
    let error = plan(
        "services:\n  web:\n    image: x\n    depends_on: [db]\n",
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "service `web` depends on `db`, which the compose file does not define; define it or remove the dependency"
    );
}

#[test]
fn a_dependency_cycle_is_named() {
    let yaml = "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on:\n      a: {condition: service_completed_successfully}\n";
    assert_eq!(
        plan(yaml, &BTreeMap::new()).unwrap_err(),
        ComposeError::DependencyCycle {
            cycle: vec!["a".into(), "b".into(), "a".into()]
        }
    );
}

#[test]
fn an_unknown_condition_is_refused() {
    let yaml =
        "services:\n  a:\n    image: x\n    depends_on:\n      b: {condition: service_ready}\n  b:\n    image: x\n";
    let error = plan(yaml, &BTreeMap::new()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("`services.a.depends_on.b.condition`: `service_ready` is not a condition")
    );
}

#[test]
fn an_undeclared_volume_is_refused() {
    let error = plan(
        "services:\n  a:\n    image: x\n    volumes: [data:/data]\n",
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`services.a.volumes[0]`: volume `data` is not declared; add it under the top-level `volumes:` section"
    );
}

#[test]
fn long_form_ports_record_the_target_and_duplicates_collapse() {
    let plan = plan_ok(
        "services:\n  a:\n    image: x\n    ports:\n      - {target: 80, published: 8080}\n      - {target: 80, host_ip: 127.0.0.1}\n",
    );
    assert_eq!(plan.services[0].ports, [80]);
    let plan = plan_ok("services:\n  a:\n    image: x\n    ports: [8080, \"9000:80/tcp\"]\n");
    assert_eq!(plan.services[0].ports, [8080, 80]);
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        (
            "    deploy: {resources: {limits: {cpus: lots}}}\n",
            "`services.a.deploy.resources.limits.cpus`",
        ),
        (
            "    deploy: {resources: {limits: {memory: 0}}}\n",
            "`services.a.deploy.resources.limits.memory`",
        ),
        (
            "    healthcheck: {test: [CMD, x], interval: soon}\n",
            "`services.a.healthcheck.interval`",
        ),
        ("    healthcheck: {test: [RUN, x]}\n", "`services.a.healthcheck.test`"),
        ("    restart: sometimes\n", "`services.a.restart`"),
        ("    ports: [\"web\"]\n", "`services.a.ports[0]`"),
        ("    command: echo 'oops\n", "`services.a.command`"),
        ("    volumes: [\"data:relative\"]\n", "`services.a.volumes[0]`"),
    ];
    for (extra, field) in cases {
        let yaml = format!("services:\n  a:\n    image: x\n{extra}volumes:\n  data:\n");
        let message = plan(&yaml, &BTreeMap::new()).unwrap_err().to_string();
        assert!(message.starts_with(field), "{extra:?}: {message}");
    }
}

#[test]
fn a_shape_error_names_its_path() {
    let error = plan(
        "services:\n  a:\n    image: x\n    working_dir: [a, b]\n",
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(
        matches!(&error, ComposeError::Format { path, .. } if path == "services.a.working_dir"),
        "{error:?}"
    );
}

#[test]
fn a_healthcheck_without_test_keeps_the_images_test() {
    let plan = plan_ok("services:\n  a:\n    image: x\n    healthcheck: {interval: 10s}\n");
    let check = plan.services[0].healthcheck.as_ref().unwrap();
    assert!(check.test.is_empty());
    assert_eq!(check.interval, Some(Duration::from_secs(10)));
    assert_eq!(check.retries, None);
}

#[test]
fn the_first_bad_field_in_declaration_order_is_the_one_reported() {
    let fields = [
        ("command", "    command: \"echo 'open\"\n"),
        ("ports[0]", "    ports: [\"0\"]\n"),
        ("volumes[0]", "    volumes: [\"undeclared:/data\"]\n"),
        (
            "depends_on.db.condition",
            "    depends_on: {db: {condition: sometimes}}\n",
        ),
        (
            "deploy.resources.limits.cpus",
            "    deploy: {resources: {limits: {cpus: \"lots\"}}}\n",
        ),
        ("restart", "    restart: sometimes\n"),
    ];
    for first in 0..fields.len() {
        let bad: String = fields[first..].iter().map(|(_, line)| *line).collect();
        let yaml = format!("services:\n  app:\n    image: busybox\n{bad}  db:\n    image: busybox\n");
        let message = plan(&yaml, &BTreeMap::new()).unwrap_err().to_string();
        let expected = format!("services.app.{}", fields[first].0);
        assert!(message.contains(&expected), "expected {expected}, got: {message}");
    }
}
