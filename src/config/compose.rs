//! Reads `ops/docker-compose.yml`: the services opsbox replaces, their host ports, credentials,
//! database name, image versions and the buckets the setup creates.

use serde_yaml_ng::{Mapping, Value};

use super::ConfigError;
use super::shell_words;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    pub nats: NatsService,
    pub minio: MinioService,
    pub postgres: PostgresService,
    /// Buckets the compose setup creates (`mc mb --ignore-existing ...`).
    pub buckets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsService {
    /// e.g. `nats:latest`
    pub image: String,
    /// Host port published for the container's client port.
    pub client_port: u16,
    /// Host port published for the container's monitoring port.
    pub monitor_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinioService {
    pub image: String,
    pub api_port: u16,
    pub console_port: u16,
    pub root_user: String,
    pub root_password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresService {
    /// e.g. `postgres:16-alpine`
    pub image: String,
    /// The major version from the image tag (16 for `postgres:16-alpine`).
    pub major: u32,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

/// The container ports the images listen on (nats.conf says 4222/8222 for NATS).
pub const NATS_CLIENT_CONTAINER_PORT: u16 = 4222;
pub const NATS_MONITOR_CONTAINER_PORT: u16 = 8222;
pub const MINIO_API_CONTAINER_PORT: u16 = 9000;
pub const MINIO_CONSOLE_CONTAINER_PORT: u16 = 9001;
pub const POSTGRES_CONTAINER_PORT: u16 = 5432;

/// What a service does in the stack, recognised by its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Nats,
    Minio,
    Postgres,
}

impl Role {
    /// The usual service name, preferred when several services use the same image.
    fn name(self) -> &'static str {
        match self {
            Role::Nats => "nats",
            Role::Minio => "minio",
            Role::Postgres => "postgres",
        }
    }

    /// The image repository (without registry) that has this role.
    fn repository(self) -> &'static str {
        match self {
            Role::Nats => "nats",
            Role::Minio => "minio/minio",
            Role::Postgres => "postgres",
        }
    }
}

/// An image reference split into repository and tag (`None` when no tag is given).
fn split_image(image: &str) -> (&str, Option<&str>) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(colon) => (
            &without_digest[..last_slash + colon],
            Some(&without_digest[last_slash + colon + 1..]),
        ),
        None => (without_digest, None),
    }
}

/// Whether `repository` is `expected`, possibly behind a registry and `library/`
/// (`docker.io/library/postgres`, `quay.io/minio/minio`).
fn repository_is(repository: &str, expected: &str) -> bool {
    repository == expected
        || repository
            .strip_suffix(expected)
            .is_some_and(|prefix| prefix.ends_with('/'))
}

/// One service of the compose file, with what error messages need.
struct Service<'a> {
    path: &'a str,
    name: &'a str,
    body: &'a Mapping,
}

impl<'a> Service<'a> {
    fn invalid(&self, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_string(),
            message: format!("service {:?} {message}", self.name),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.body.get(key)
    }

    fn image(&self) -> Result<&'a str, ConfigError> {
        self.get("image")
            .and_then(Value::as_str)
            .ok_or_else(|| self.invalid("has no image"))
    }

    /// The `environment` variable `key`, from the map or the `K=V` list form.
    fn env(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get("environment") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Mapping(map)) => match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => scalar_text(value).map(Some).ok_or_else(|| {
                    self.invalid(format_args!("has a non-scalar {key} in environment"))
                }),
            },
            Some(Value::Sequence(list)) => {
                let mut found = None;
                for entry in list {
                    let entry = entry.as_str().ok_or_else(|| {
                        self.invalid("has an environment list entry that is not a K=V string")
                    })?;
                    if let Some((k, v)) = entry.split_once('=')
                        && k == key
                    {
                        found = Some(v.to_string());
                    }
                }
                Ok(found)
            }
            Some(_) => Err(self.invalid("has an environment that is neither a map nor a list")),
        }
    }

    fn required_env(&self, key: &str) -> Result<String, ConfigError> {
        self.env(key)?
            .ok_or_else(|| self.invalid(format_args!("has no {key} in environment")))
    }

    /// Every published port as (host, container).
    fn ports(&self) -> Result<Vec<(u16, u16)>, ConfigError> {
        let list = match self.get("ports") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Sequence(list)) => list,
            Some(_) => return Err(self.invalid("has `ports` that is not a list")),
        };
        list.iter().map(|entry| self.port_mapping(entry)).collect()
    }

    fn port_mapping(&self, entry: &Value) -> Result<(u16, u16), ConfigError> {
        let bad = |what: &str| {
            self.invalid(format_args!(
                "has a bad entry in ports: {} ({what})",
                scalar_text(entry).unwrap_or_else(|| format!("{entry:?}"))
            ))
        };
        match entry {
            Value::Number(_) => {
                let port = parse_port(&scalar_text(entry).unwrap_or_default())
                    .ok_or_else(|| bad("not a port number"))?;
                Ok((port, port))
            }
            Value::String(text) => {
                // [IP:][HOST:]CONTAINER[/PROTOCOL]; the IP may be [::1].
                let text = text.split('/').next().unwrap_or(text);
                let (rest, container) = match text.rsplit_once(':') {
                    Some((rest, container)) => (Some(rest), container),
                    None => (None, text),
                };
                if container.contains('-') {
                    return Err(bad("port ranges are not supported"));
                }
                let container = parse_port(container).ok_or_else(|| bad("container port"))?;
                let host = match rest {
                    None => container,
                    Some(rest) => {
                        let host = rest.rsplit_once(':').map_or(rest, |(_, host)| host);
                        // "127.0.0.1::4222" leaves the host port to Docker; without Docker the
                        // container port is the natural choice.
                        if host.is_empty() {
                            container
                        } else if rest.ends_with(']') || host.contains('.') {
                            // Only an address was given ("127.0.0.1:4222" is not valid compose).
                            return Err(bad("host port"));
                        } else {
                            parse_port(host).ok_or_else(|| bad("host port"))?
                        }
                    }
                };
                Ok((host, container))
            }
            Value::Mapping(map) => {
                let field = |key: &str| map.get(key).and_then(scalar_text);
                let container = field("target")
                    .as_deref()
                    .and_then(parse_port)
                    .ok_or_else(|| bad("no valid `target`"))?;
                let host = match field("published") {
                    None => container,
                    Some(published) => {
                        parse_port(&published).ok_or_else(|| bad("`published` is not a port"))?
                    }
                };
                Ok((host, container))
            }
            _ => Err(bad("neither a string nor a map")),
        }
    }

    /// The host port published for `container`.
    fn host_port(&self, container: u16) -> Result<u16, ConfigError> {
        self.ports()?
            .into_iter()
            .find(|(_, c)| *c == container)
            .map(|(host, _)| host)
            .ok_or_else(|| {
                self.invalid(format_args!(
                    "publishes no host port for container port {container} in ports"
                ))
            })
    }

    /// The text of `entrypoint` and `command` (string or list) as one shell text.
    fn scripts(&self) -> Vec<String> {
        ["entrypoint", "command"]
            .iter()
            .filter_map(|key| match self.get(key)? {
                Value::String(text) => Some(text.clone()),
                Value::Sequence(list) => Some(
                    list.iter()
                        .filter_map(scalar_text)
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                _ => None,
            })
            .collect()
    }
}

/// The container port of MinIO's console: the port of `--console-address ":9001"` in its
/// command (MinIO's own default when the flag is absent).
fn console_address_port(scripts: &[String]) -> u16 {
    scripts
        .iter()
        .filter_map(|script| shell_words::split(script).ok())
        .flat_map(|tokens| shell_words::commands(&tokens))
        .flat_map(|(_, words)| {
            let mut found = Vec::new();
            for (i, word) in words.iter().enumerate() {
                if let Some(value) = word.strip_prefix("--console-address=") {
                    found.push(value.to_string());
                } else if word == "--console-address"
                    && let Some(value) = words.get(i + 1)
                {
                    found.push(value.clone());
                }
            }
            found
        })
        .find_map(|address| parse_port(address.rsplit(':').next().unwrap_or("")))
        .unwrap_or(MINIO_CONSOLE_CONTAINER_PORT)
}

/// A YAML scalar as text (`9000`, `true`, `"x"`).
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse().ok().filter(|&port| port != 0)
}

/// The leading major version of a postgres image tag: `16-alpine`, `16.4`, `16` → 16.
fn postgres_major(tag: Option<&str>) -> Option<u32> {
    let tag = tag?;
    let digits = tag.find(|c: char| !c.is_ascii_digit()).unwrap_or(tag.len());
    tag[..digits].parse().ok()
}

/// Buckets created by `mc mb [flags] alias/bucket...` in `script`.
fn mc_mb_buckets(script: &str, buckets: &mut Vec<String>) {
    // An unparsable script (unbalanced quotes) is docker's problem, not a bucket list.
    let Ok(tokens) = shell_words::split(script) else {
        return;
    };
    for (_, words) in shell_words::commands(&tokens) {
        let Some(at) = words.windows(2).position(|w| w[0] == "mc" && w[1] == "mb") else {
            continue;
        };
        let mut args = words[at + 2..].iter();
        while let Some(arg) = args.next() {
            if arg == "--region" {
                args.next();
            } else if arg.starts_with('-') {
                continue;
            } else if let Some((_alias, path)) = arg.split_once('/') {
                let bucket = path.split('/').next().unwrap_or(path);
                if !bucket.is_empty() && !buckets.iter().any(|b| b == bucket) {
                    buckets.push(bucket.to_string());
                }
            }
        }
    }
}

impl Compose {
    /// Parse the compose file `text`; `path` is only used in error messages.
    pub fn parse(path: &str, text: &str) -> Result<Self, ConfigError> {
        let document: Value = serde_yaml_ng::from_str(text).map_err(|error| {
            let message = match error.location() {
                Some(at) => format!("line {} column {}: {error}", at.line(), at.column()),
                None => error.to_string(),
            };
            ConfigError::Malformed {
                path: path.to_string(),
                message,
            }
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_string(),
            message,
        };
        let services = document
            .get("services")
            .and_then(Value::as_mapping)
            .ok_or_else(|| invalid("has no `services` map".to_string()))?;
        let mut all = Vec::new();
        for (name, body) in services {
            let name = name
                .as_str()
                .ok_or_else(|| invalid(format!("service name {name:?} is not a string")))?;
            let body = body
                .as_mapping()
                .ok_or_else(|| invalid(format!("service {name:?} is not a map")))?;
            all.push(Service { path, name, body });
        }

        let find = |role: Role| -> Result<&Service<'_>, ConfigError> {
            let matching: Vec<&Service<'_>> = all
                .iter()
                .filter(|service| {
                    service
                        .image()
                        .is_ok_and(|image| repository_is(split_image(image).0, role.repository()))
                })
                .collect();
            match matching.as_slice() {
                [] => Err(invalid(format!(
                    "no service uses the {} image (expected e.g. a service {:?} with image: {}:<tag>)",
                    role.repository(),
                    role.name(),
                    role.repository()
                ))),
                [only] => Ok(only),
                several => several
                    .iter()
                    .find(|service| service.name == role.name())
                    .copied()
                    .ok_or_else(|| {
                        let names: Vec<&str> = several.iter().map(|s| s.name).collect();
                        invalid(format!(
                            "several services use the {} image ({}); name one of them {:?}",
                            role.repository(),
                            names.join(", "),
                            role.name()
                        ))
                    }),
            }
        };

        let nats = find(Role::Nats)?;
        let minio = find(Role::Minio)?;
        let postgres = find(Role::Postgres)?;

        let postgres_image = postgres.image()?;
        let major = postgres_major(split_image(postgres_image).1).ok_or_else(|| {
            postgres.invalid(format_args!(
                "has image {postgres_image:?}, which does not pin a major version; \
                 a major version must be pinned (e.g. postgres:16-alpine)"
            ))
        })?;
        let user = postgres
            .env("POSTGRES_USER")?
            .unwrap_or_else(|| "postgres".to_string());
        let database = postgres.env("POSTGRES_DB")?.unwrap_or_else(|| user.clone());

        let mut buckets = Vec::new();
        for service in &all {
            for script in service.scripts() {
                mc_mb_buckets(&script, &mut buckets);
            }
        }

        Ok(Self {
            nats: NatsService {
                image: nats.image()?.to_string(),
                client_port: nats.host_port(NATS_CLIENT_CONTAINER_PORT)?,
                monitor_port: nats.host_port(NATS_MONITOR_CONTAINER_PORT)?,
            },
            minio: MinioService {
                image: minio.image()?.to_string(),
                api_port: minio.host_port(MINIO_API_CONTAINER_PORT)?,
                console_port: minio.host_port(console_address_port(&minio.scripts()))?,
                root_user: minio.required_env("MINIO_ROOT_USER")?,
                root_password: minio.required_env("MINIO_ROOT_PASSWORD")?,
            },
            postgres: PostgresService {
                image: postgres_image.to_string(),
                major,
                port: postgres.host_port(POSTGRES_CONTAINER_PORT)?,
                password: postgres.required_env("POSTGRES_PASSWORD")?,
                user,
                database,
            },
            buckets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_port_follows_console_address() {
        let words = |text: &str| vec![text.to_string()];
        assert_eq!(
            console_address_port(&words("server /data --console-address \":9001\"")),
            9001
        );
        assert_eq!(
            console_address_port(&words("server /data --console-address=0.0.0.0:9090")),
            9090
        );
        assert_eq!(console_address_port(&words("server /data")), 9001);
    }

    const PATH: &str = "ops/docker-compose.yml";

    fn error(text: &str) -> String {
        match Compose::parse(PATH, text) {
            Ok(compose) => panic!("expected an error, got {compose:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// A minimal valid file in which `{nats}`, `{minio}`, `{postgres}` are replaced.
    fn file(nats: &str, minio: &str, postgres: &str) -> String {
        format!("services:\n  nats:\n{nats}\n  minio:\n{minio}\n  postgres:\n{postgres}\n")
    }

    const NATS: &str = "    image: nats:2.12\n    ports: [\"4222:4222\", \"8222:8222\"]";
    const MINIO: &str = "    image: minio/minio\n    ports: [\"9000:9000\", \"9001:9001\"]\n    \
                         environment: {MINIO_ROOT_USER: u, MINIO_ROOT_PASSWORD: p}";
    const POSTGRES: &str = "    image: postgres:16\n    ports: [\"5432:5432\"]\n    \
                            environment: [POSTGRES_PASSWORD=pw]";

    #[test]
    fn the_real_compose_file() {
        let compose = Compose::parse(PATH, crate::config::DEFAULT_COMPOSE)
            .expect("ops/docker-compose.yml parses");
        assert_eq!(compose.nats.client_port, 4222);
        assert_eq!(compose.nats.monitor_port, 8222);
        assert!(compose.nats.image.starts_with("nats:"));
        assert_eq!(
            compose.minio,
            MinioService {
                image: "minio/minio:latest".into(),
                api_port: 9000,
                console_port: 9001,
                root_user: "minioadmin".into(),
                root_password: "minioadmin".into(),
            }
        );
        assert_eq!(
            compose.postgres,
            PostgresService {
                image: "postgres:16-alpine".into(),
                major: 16,
                port: 5432,
                user: "postgres".into(),
                password: "postgres".into(),
                database: "historian".into(),
            }
        );
        assert_eq!(compose.buckets, vec!["historian".to_string()]);
    }

    #[test]
    fn services_are_found_by_image_and_ports_in_every_syntax() {
        let text = "services:\n  broker:\n    image: docker.io/library/nats:latest\n    ports:\n      \
                    - \"127.0.0.1:14222:4222\"\n      - target: 8222\n        published: \"18222\"\n  \
                    box:\n    image: natsio/nats-box\n  blob:\n    image: quay.io/minio/minio:RELEASE.2025\n    \
                    ports: [9000, \"19001:9001/tcp\"]\n    environment:\n      - MINIO_ROOT_USER=admin\n      \
                    - MINIO_ROOT_PASSWORD=secret\n  db:\n    image: postgres:16.4-bookworm\n    ports: [\"[::1]:15432:5432\"]\n    \
                    environment:\n      POSTGRES_USER: app\n      POSTGRES_PASSWORD: 1234\n  setup:\n    image: minio/mc\n    \
                    command: [\"sh\", \"-c\", \"mc alias set x http://blob:9000 a b; mc mb -p x/one x/two/sub && mc mb --region r x/three\"]\n";
        let compose = Compose::parse(PATH, text).expect("parses");
        assert_eq!(compose.nats.image, "docker.io/library/nats:latest");
        assert_eq!(
            (compose.nats.client_port, compose.nats.monitor_port),
            (14222, 18222)
        );
        assert_eq!(
            (compose.minio.api_port, compose.minio.console_port),
            (9000, 19001)
        );
        assert_eq!(compose.minio.root_user, "admin");
        assert_eq!(compose.postgres.port, 15432);
        assert_eq!(compose.postgres.major, 16);
        assert_eq!(compose.postgres.user, "app");
        assert_eq!(compose.postgres.password, "1234");
        assert_eq!(
            compose.postgres.database, "app",
            "POSTGRES_DB defaults to the user"
        );
        assert_eq!(compose.buckets, vec!["one", "two", "three"]);
    }

    #[test]
    fn malformed_yaml_names_file_line_and_column() {
        let message = error("services:\n  nats:\n    image: [unclosed\n");
        assert!(
            message.starts_with("ops/docker-compose.yml is malformed: line "),
            "{message}"
        );
        assert!(message.contains("column"), "{message}");
    }

    #[test]
    fn invalid_files_name_the_service_and_key() {
        assert_eq!(
            error(&file(
                NATS,
                MINIO,
                "    image: postgres:16\n    ports: [\"5432:5432\"]"
            )),
            "ops/docker-compose.yml: service \"postgres\" has no POSTGRES_PASSWORD in environment"
        );
        assert_eq!(
            error(&file(
                NATS,
                MINIO,
                &POSTGRES.replace("postgres:16", "postgres:latest")
            )),
            "ops/docker-compose.yml: service \"postgres\" has image \"postgres:latest\", which does \
             not pin a major version; a major version must be pinned (e.g. postgres:16-alpine)"
        );
        assert!(
            error(&file(
                NATS,
                MINIO,
                &POSTGRES.replace("postgres:16", "postgres")
            ))
            .contains("a major version must be pinned")
        );
        assert_eq!(
            error(&file(
                &NATS.replace("8222:8222", "8222:8223"),
                MINIO,
                POSTGRES
            )),
            "ops/docker-compose.yml: service \"nats\" publishes no host port for container port \
             8222 in ports"
        );
        assert_eq!(
            error(&file(
                &NATS.replace("4222:4222", "42x:4222"),
                MINIO,
                POSTGRES
            )),
            "ops/docker-compose.yml: service \"nats\" has a bad entry in ports: 42x:4222 (host port)"
        );
        assert_eq!(
            error(&file(
                NATS,
                &MINIO.replace("MINIO_ROOT_USER: u, ", ""),
                POSTGRES
            )),
            "ops/docker-compose.yml: service \"minio\" has no MINIO_ROOT_USER in environment"
        );
        assert_eq!(
            error(&file("    image: redis:7", MINIO, POSTGRES)),
            "ops/docker-compose.yml: no service uses the nats image (expected e.g. a service \
             \"nats\" with image: nats:<tag>)"
        );
    }
}
