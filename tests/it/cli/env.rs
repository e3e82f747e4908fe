//! `opsbox env` in every format, checked by the programs that read them (bash, dash, serde).

use std::process::Command;

use crate::support::project_copy;
use crate::support::stack::Opsbox;

/// A password with everything a shell or an env file could trip over.
const TRICKY_PASSWORD: &str = r#"it's "q" & ; | * ~ \ x"#;

/// A copy of the repository's ops/ whose PostgreSQL password is `TRICKY_PASSWORD`.
fn project_with_tricky_password() -> tempfile::TempDir {
    let project = project_copy();
    let compose_path = project.path().join("ops/docker-compose.yml");
    let compose = std::fs::read_to_string(&compose_path).expect("read the compose file");
    // YAML single quotes: a quote is written twice, nothing else is special.
    let yaml = format!("'{}'", TRICKY_PASSWORD.replace('\'', "''"));
    let changed = compose.replace(
        "POSTGRES_PASSWORD: postgres",
        &format!("POSTGRES_PASSWORD: {yaml}"),
    );
    assert_ne!(
        changed, compose,
        "the compose file has no POSTGRES_PASSWORD: postgres line"
    );
    std::fs::write(&compose_path, changed).expect("write the compose file");
    project
}

struct Ports {
    nats: String,
    postgres: String,
    s3: String,
}

fn env_args<'a>(ports: &'a Ports, format: &'a str) -> Vec<&'a str> {
    vec![
        "env",
        "--format",
        format,
        "--nats-port",
        &ports.nats,
        "--postgres-port",
        &ports.postgres,
        "--s3-port",
        &ports.s3,
    ]
}

fn ports(opsbox: &Opsbox) -> Ports {
    Ports {
        nats: opsbox.nats_port.to_string(),
        postgres: opsbox.postgres_port.to_string(),
        s3: opsbox.s3_port.to_string(),
    }
}

/// Run `script` with `shell` after `prelude`, printing the named variables one per line.
fn shell_values(shell: &str, prelude: &str, names: &[&str]) -> Vec<String> {
    let printed: Vec<String> = names.iter().map(|n| format!("\"${n}\"")).collect();
    let script = format!("{prelude}\nprintf '%s\\n' {}", printed.join(" "));
    let output = Command::new(shell)
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shell}: {e}"));
    assert!(
        output.status.success(),
        "{shell} could not evaluate the variables: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn sh_format_survives_eval_in_bash_and_dash_with_a_hostile_password() {
    let temp = project_with_tricky_password();
    let project = Opsbox::with_project(temp.path().to_path_buf());
    let ports = ports(&project);
    let outcome = project.run(&env_args(&ports, "sh"));
    outcome.expect_code(0, "opsbox env --format sh");
    assert!(
        outcome.stderr.is_empty(),
        "env wrote to stderr: {}",
        outcome.stderr
    );
    let names = [
        "NATS_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_REGION",
        "POSTGRES_PASSWORD",
        "DATABASE_URL",
    ];
    for shell in ["bash", "dash"] {
        let prelude = format!(
            "eval \"$(cat <<'OPSBOX_END'\n{}OPSBOX_END\n)\"",
            outcome.stdout
        );
        let values = shell_values(shell, &prelude, &names);
        let s3_url = format!("http://127.0.0.1:{}", ports.s3);
        assert_eq!(
            values[..11],
            [
                format!("nats://127.0.0.1:{}", ports.nats),
                "127.0.0.1".into(),
                ports.postgres.clone(),
                "postgres".into(),
                TRICKY_PASSWORD.into(),
                "historian".into(),
                s3_url.clone(),
                s3_url,
                "minioadmin".into(),
                "us-east-1".into(),
                TRICKY_PASSWORD.into(),
            ],
            "{shell} read other values than opsbox meant"
        );
        let url = &values[11];
        assert!(
            url.starts_with("postgresql://postgres:it%27s%20%22q%22")
                && url.ends_with(&format!("@127.0.0.1:{}/historian", ports.postgres)),
            "DATABASE_URL is not a percent-encoded postgresql URL: {url}"
        );
    }
}

#[test]
fn dotenv_format_is_read_back_by_bash() {
    let temp = project_with_tricky_password();
    let project = Opsbox::with_project(temp.path().to_path_buf());
    let ports = ports(&project);
    let outcome = project.run(&env_args(&ports, "dotenv"));
    outcome.expect_code(0, "opsbox env --format dotenv");
    assert!(
        outcome
            .stdout
            .lines()
            .any(|l| l == format!("NATS_URL=nats://127.0.0.1:{}", ports.nats)),
        "no plain NATS_URL line in:\n{}",
        outcome.stdout
    );
    let file = temp.path().join(".env");
    std::fs::write(&file, &outcome.stdout).expect("write .env");
    let values = shell_values(
        "bash",
        &format!("set -a; . '{}'", file.display()),
        &["PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "OPSBOX_S3_BUCKETS"],
    );
    assert_eq!(values, [TRICKY_PASSWORD, "minioadmin", "historian"]);
}

#[test]
fn json_format_is_one_object_with_every_variable() {
    let project = Opsbox::with_own_cache();
    let ports = ports(&project);
    let outcome = project.run(&env_args(&ports, "json"));
    outcome.expect_code(0, "opsbox env --format json");
    let value: serde_json::Value =
        serde_json::from_str(&outcome.stdout).expect("env --format json prints JSON");
    assert_eq!(
        value["NATS_URL"],
        format!("nats://127.0.0.1:{}", ports.nats)
    );
    assert_eq!(
        value["DATABASE_URL"],
        format!(
            "postgresql://postgres:postgres@127.0.0.1:{}/historian",
            ports.postgres
        )
    );
    for key in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
    ] {
        assert!(value[key].is_string(), "env --format json has no {key}");
    }
}

#[test]
fn github_format_appends_to_the_github_env_file() {
    let project = Opsbox::with_own_cache();
    let ports = ports(&project);
    let github_env = project.home.path().join("github_env");
    std::fs::write(&github_env, "EARLIER=1\n").expect("write GITHUB_ENV");
    let outcome = project.run_with_env(&env_args(&ports, "github"), &[("GITHUB_ENV", &github_env)]);
    outcome.expect_code(0, "opsbox env --format github");
    assert_eq!(
        outcome.stdout, "",
        "with $GITHUB_ENV set nothing goes to stdout"
    );
    assert!(
        outcome.stderr.contains("GITHUB_ENV"),
        "env did not say where the variables went: {}",
        outcome.stderr
    );
    let text = std::fs::read_to_string(&github_env).expect("read GITHUB_ENV");
    assert!(
        text.starts_with("EARLIER=1\n"),
        "the file was not appended to:\n{text}"
    );
    assert!(
        text.contains(&format!("\nNATS_URL=nats://127.0.0.1:{}\n", ports.nats)),
        "no NATS_URL in the GITHUB_ENV file:\n{text}"
    );

    let printed = project.run(&env_args(&ports, "github"));
    printed.expect_code(0, "opsbox env --format github without $GITHUB_ENV");
    assert!(
        printed.stdout.contains("PGUSER=postgres\n"),
        "without $GITHUB_ENV the lines go to stdout:\n{}",
        printed.stdout
    );
}
