//! The lab's control socket: how `drctl lab link …` and `drctl lab workload …`
//! in one terminal reach the link and workload living inside `drctl lab up`
//! in another. One line in, one line out, on 127.0.0.1 only.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::{LabError, LinkControl, Result, WorkloadControl};

/// What a control client may ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlCommand {
    LinkCut,
    LinkRestore,
    LinkLatency(Duration),
    WorkloadPause,
    WorkloadResume,
    Status,
}

impl ControlCommand {
    fn to_line(&self) -> String {
        match self {
            ControlCommand::LinkCut => "link cut".into(),
            ControlCommand::LinkRestore => "link restore".into(),
            ControlCommand::LinkLatency(d) => format!("link latency {}", d.as_millis()),
            ControlCommand::WorkloadPause => "workload pause".into(),
            ControlCommand::WorkloadResume => "workload resume".into(),
            ControlCommand::Status => "status".into(),
        }
    }

    fn from_line(line: &str) -> Option<ControlCommand> {
        let words: Vec<&str> = line.split_whitespace().collect();
        Some(match words.as_slice() {
            ["link", "cut"] => ControlCommand::LinkCut,
            ["link", "restore"] => ControlCommand::LinkRestore,
            ["link", "latency", ms] => {
                ControlCommand::LinkLatency(Duration::from_millis(ms.parse().ok()?))
            }
            ["workload", "pause"] => ControlCommand::WorkloadPause,
            ["workload", "resume"] => ControlCommand::WorkloadResume,
            ["status"] => ControlCommand::Status,
            _ => return None,
        })
    }
}

/// Serves control requests until the task is dropped.
pub(crate) async fn serve_control(
    listener: TcpListener,
    link: LinkControl,
    workload: WorkloadControl,
) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let (link, workload) = (link.clone(), workload.clone());
        tokio::spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = match ControlCommand::from_line(&line) {
                    Some(ControlCommand::LinkCut) => {
                        link.cut();
                        "ok".to_string()
                    }
                    Some(ControlCommand::LinkRestore) => {
                        link.restore();
                        "ok".to_string()
                    }
                    Some(ControlCommand::LinkLatency(d)) => {
                        link.set_latency(d);
                        "ok".to_string()
                    }
                    Some(ControlCommand::WorkloadPause) => {
                        workload.pause();
                        "ok".to_string()
                    }
                    Some(ControlCommand::WorkloadResume) => {
                        workload.resume();
                        "ok".to_string()
                    }
                    Some(ControlCommand::Status) => serde_json::json!({
                        "link": link.state(),
                        "workload": {"paused": workload.is_paused(), "written": workload.written()},
                    })
                    .to_string(),
                    None => format!("error: unknown command {line:?}"),
                };
                if w.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Sends one command to the lab listening on `port`; returns its reply.
pub async fn send_control(port: u16, command: &ControlCommand) -> Result<String> {
    let not_running = |e: std::io::Error| {
        LabError::Other(format!(
            "cannot reach the lab's control socket on 127.0.0.1:{port} ({e}); is `drctl lab up` running?"
        ))
    };
    let exchange = async {
        let sock = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(not_running)?;
        let (r, mut w) = sock.into_split();
        w.write_all(format!("{}\n", command.to_line()).as_bytes())
            .await
            .map_err(not_running)?;
        let mut lines = BufReader::new(r).lines();
        let reply = lines
            .next_line()
            .await
            .map_err(not_running)?
            .unwrap_or_default();
        if let Some(err) = reply.strip_prefix("error: ") {
            return Err(LabError::Other(err.to_string()));
        }
        Ok(reply)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| {
            LabError::Other(format!(
                "the lab on 127.0.0.1:{port} did not answer within 5s"
            ))
        })?
}
