//! The port pre-flight of `up`: every port is bind-tested before anything starts, so a port
//! in use fails at once and names its owner. The listeners opsbox serves itself (S3, the
//! console) are kept and handed to the stack.

use std::net::{SocketAddr, TcpListener};

use crate::console;
use crate::error::{Error, Result};
use crate::services::ServiceError;
use crate::settings::Settings;
use crate::stack::Listeners;
use crate::state::RunFile;
use crate::supervisor::process;
use crate::types::ServiceName;

/// Check every port; keep the listeners opsbox serves itself.
pub fn bind(settings: &Settings) -> Result<Listeners> {
    if let Some(port) = settings.console_port {
        let ports = [
            (ServiceName::Nats, settings.nats.port),
            (ServiceName::Nats, settings.nats.monitor_port),
            (ServiceName::Postgres, settings.postgres.port),
            (ServiceName::S3, settings.s3.port),
        ];
        if let Some((service, _)) = ports.iter().find(|(s, p)| settings.runs(*s) && *p == port) {
            return Err(Error::Usage {
                message: format!(
                    "the console and {service} are both configured to use port {port}"
                ),
                hint: Some("give the console its own port with --console-port".into()),
            });
        }
    }
    let s3 = check_ports(settings)?;
    let console = settings
        .console_port
        .map(|port| console::bind(settings.host, port))
        .transpose()?;
    Ok(Listeners { s3, console })
}

/// Bind-test every port before starting anything. The S3 listener is kept and handed to the
/// S3 server; the others are released for the child processes to bind.
fn check_ports(settings: &Settings) -> Result<Option<TcpListener>> {
    let previous: Vec<i32> = RunFile::read(&settings.state.run_file())
        .ok()
        .flatten()
        .map(|run| {
            std::iter::once(run.supervisor.pid)
                .chain(run.services.iter().filter_map(|s| s.process.map(|p| p.pid)))
                .collect()
        })
        .unwrap_or_default();
    let mut wanted: Vec<(ServiceName, &'static str, u16, &'static str)> = Vec::new();
    if settings.runs(ServiceName::Nats) {
        wanted.push((
            ServiceName::Nats,
            "client",
            settings.nats.port,
            "--nats-port",
        ));
        wanted.push((
            ServiceName::Nats,
            "monitoring",
            settings.nats.monitor_port,
            "--nats-monitor-port",
        ));
    }
    if settings.runs(ServiceName::Postgres) {
        wanted.push((
            ServiceName::Postgres,
            "server",
            settings.postgres.port,
            "--postgres-port",
        ));
    }
    if settings.runs(ServiceName::S3) {
        wanted.push((ServiceName::S3, "API", settings.s3.port, "--s3-port"));
    }
    for (i, (service, _, port, _)) in wanted.iter().enumerate() {
        if let Some((other, _, _, _)) = wanted[..i].iter().find(|(_, _, p, _)| p == port) {
            return Err(Error::Usage {
                message: format!("{service} and {other} are both configured to use port {port}"),
                hint: Some("give each service its own port (--nats-port, --nats-monitor-port, --postgres-port, --s3-port)".into()),
            });
        }
    }
    let mut s3 = None;
    for (service, what, port, flag) in wanted {
        let addr = SocketAddr::new(settings.host, port);
        match TcpListener::bind(addr) {
            Ok(listener) => {
                if service == ServiceName::S3 {
                    listener
                        .set_nonblocking(true)
                        .map_err(|e| Error::io("cannot configure the S3 listener", e))?;
                    s3 = Some(listener);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let owner = process::port_owner(port);
                let ours = owner
                    .as_ref()
                    .is_some_and(|(pid, _)| previous.contains(pid));
                return Err(Error::PortInUse {
                    service,
                    what,
                    host: settings.host.to_string(),
                    port,
                    owner: owner
                        .map(|(pid, command)| format!(" (by pid {pid}: {command})"))
                        .unwrap_or_default(),
                    flag,
                    ours,
                });
            }
            Err(e) => {
                return Err(ServiceError::Failed {
                    service,
                    message: format!("cannot listen on {addr} for the {what} port: {e}"),
                    hint: Some("check --host: it must be an address of this machine".into()),
                }
                .into());
            }
        }
    }
    Ok(s3)
}
