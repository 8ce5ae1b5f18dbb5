//! `strata ctl`: the controller's client. Tables by default, `-o json` and `-o yaml` for
//! scripts. The controller's address and token come from flags or the environment
//! (`STRATA_CONTROLLER`, `STRATA_TOKEN`, `STRATA_TOKEN_FILE`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
    Yaml,
}

/// Where the controller is and how to prove who we are.
#[derive(Debug, clap::Args)]
pub(crate) struct Connection {
    /// The controller's address.
    #[arg(
        long,
        env = "STRATA_CONTROLLER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    controller: String,
    /// The API token.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// A file holding the API token (the controller writes DATA_DIR/token).
    #[arg(long, env = "STRATA_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Output format.
    #[arg(
        short,
        long,
        value_enum,
        ignore_case = true,
        default_value = "table",
        global = true
    )]
    output: Output,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CtlCommand {
    /// Show a collection, or one resource of it: `get loadBalancers`, `get loadBalancers portal`.
    Get {
        collection: String,
        id: Option<String>,
    },
    /// Create or update the resources of a file (JSON or YAML; one resource, a list, a
    /// `{"value": [...]}` collection, or several YAML documents). Each resource names
    /// itself by `resourceRef` (`/loadBalancers/portal`).
    Apply {
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Delete a resource.
    Delete { collection: String, id: String },
    /// Print the token an agent of NODE (a loadBalancerMuxes or servers id) proves
    /// itself with, derived from the API token.
    NodeToken { node: String },
    /// Wait until a resource's provisioningState leaves Updating; fails if it ends Failed.
    Wait {
        collection: String,
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(c: &Connection) -> anyhow::Result<Client> {
        let token = match (&c.token, &c.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => read_token(f)?,
            (None, None) => bail!(
                "no API token: pass --token or --token-file (the controller writes it to DATA_DIR/token), or set STRATA_TOKEN or STRATA_TOKEN_FILE"
            ),
        };
        Ok(Client {
            base: format!("{}/networking/v1", c.controller.trim_end_matches('/')),
            token,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
        })
    }

    /// Sends a request; the status and the JSON body (Null when empty).
    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let response = match (method, body) {
            ("PUT", Some(b)) => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            _ => self.agent.get(&url).header("Authorization", &auth).call(),
        };
        let mut response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .context("reading the response")?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {url}: the answer is not JSON"))?
        };
        Ok((status, value))
    }

    /// Like [`Client::send`], but a status other than 2xx is an error naming what went wrong.
    fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, value) = self.send(method, path, body)?;
        if (200..300).contains(&status) {
            return Ok((status, value));
        }
        let e = &value["error"];
        let mut message = format!("{method} {path}: {status}");
        if let Some(code) = e["code"].as_str() {
            message.push_str(&format!(" {code}"));
        }
        if let Some(target) = e["target"].as_str().filter(|t| !t.is_empty()) {
            message.push_str(&format!(" at {target}"));
        }
        if let Some(m) = e["message"].as_str() {
            message.push_str(&format!(": {m}"));
        }
        bail!(message)
    }
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    Ok(t.trim().to_string())
}

/// Runs one command; Ok(false) for a wait that ended Failed.
pub(crate) fn run(connection: &Connection, command: CtlCommand) -> anyhow::Result<bool> {
    let client = Client::new(connection)?;
    let output = connection.output;
    match command {
        CtlCommand::NodeToken { node } => {
            println!(
                "{}",
                strata_controller::southbound::node_token(&client.token, &node)
            );
            Ok(true)
        }
        CtlCommand::Get { collection, id } => {
            let path = match &id {
                Some(id) => format!("/{collection}/{id}"),
                None => format!("/{collection}"),
            };
            let (_, value) = client.expect("GET", &path, None)?;
            let docs: Vec<Value> = match (&id, &value["value"]) {
                (None, Value::Array(items)) => items.clone(),
                _ => vec![value.clone()],
            };
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&value)?),
                Output::Yaml => print!("{}", serde_yaml_ng::to_string(&value)?),
                Output::Table => print!("{}", table(&collection, &docs)),
            }
            Ok(true)
        }
        CtlCommand::Apply { file } => {
            let docs = read_documents(&file)?;
            let mut results = Vec::new();
            for (i, doc) in docs.into_iter().enumerate() {
                let reference = doc["resourceRef"].as_str().map(str::to_string).with_context(|| {
                    format!(
                        "{}: document {} has no resourceRef (such as \"/loadBalancers/portal\") to say where it goes",
                        file.display(),
                        i + 1
                    )
                })?;
                let path = reference.trim_end_matches('/').to_string();
                let (status, stored) = client.expect("PUT", &path, Some(&doc))?;
                let verb = if status == 201 {
                    "created"
                } else {
                    "configured"
                };
                if output == Output::Table {
                    println!("{} {verb}", path.trim_start_matches('/'));
                }
                results.push(stored);
            }
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&results)?),
                Output::Yaml => print!("{}", serde_yaml_ng::to_string(&results)?),
                Output::Table => {}
            }
            Ok(true)
        }
        CtlCommand::Delete { collection, id } => {
            client.expect("DELETE", &format!("/{collection}/{id}"), None)?;
            match output {
                Output::Table => println!("{collection}/{id} deleted"),
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"deleted": format!("/{collection}/{id}")})
                ),
                Output::Yaml => println!("deleted: /{collection}/{id}"),
            }
            Ok(true)
        }
        CtlCommand::Wait {
            collection,
            id,
            timeout,
        } => {
            let deadline = Instant::now() + Duration::from_secs(timeout);
            let path = format!("/{collection}/{id}");
            loop {
                let (_, doc) = client.expect("GET", &path, None)?;
                let state = doc["properties"]["provisioningState"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if !state.eq_ignore_ascii_case("Updating") {
                    match output {
                        Output::Table => println!("{collection}/{id} {state}"),
                        Output::Json => println!(
                            "{}",
                            serde_json::json!({"resourceRef": path, "provisioningState": state})
                        ),
                        Output::Yaml => println!("resourceRef: {path}\nprovisioningState: {state}"),
                    }
                    return Ok(!state.eq_ignore_ascii_case("Failed"));
                }
                if Instant::now() >= deadline {
                    bail!("{path} still Updating after {timeout} s");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The resources of a file: JSON (one resource, an array, or `{"value": [...]}`) or YAML
/// (the same, or several documents).
fn read_documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let values: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        vec![
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", path.display()))?,
        ]
    } else {
        let mut out = Vec::new();
        for (i, d) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let v = serde::Deserialize::deserialize(d).with_context(|| {
                format!("{}: YAML document {} is not valid", path.display(), i + 1)
            })?;
            out.push(v);
        }
        out
    };
    let mut docs = Vec::new();
    for v in values {
        match v {
            Value::Array(items) => docs.extend(items),
            Value::Object(ref m) if m.get("value").is_some_and(Value::is_array) => {
                if let Some(Value::Array(items)) = m.get("value") {
                    docs.extend(items.iter().cloned());
                }
            }
            Value::Null => {}
            other => docs.push(other),
        }
    }
    if docs.is_empty() {
        bail!("{}: no resources in the file", path.display());
    }
    Ok(docs)
}

/// What a row says about a resource beyond its id and state.
fn detail(collection: &str, doc: &Value) -> String {
    let props = &doc["properties"];
    let strs = |v: &Value, field: &str| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.pointer(field)?.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    match collection.to_ascii_lowercase().as_str() {
        "loadbalancers" => {
            let vips = strs(
                &props["frontendIPConfigurations"],
                "/properties/privateIPAddress",
            );
            let rules: Vec<String> = props["loadBalancingRules"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            let p = &r["properties"];
                            format!(
                                "{} {}->{}",
                                p["protocol"].as_str().unwrap_or("?"),
                                p["frontendPort"],
                                p["backendPort"]
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "vips {} rules {}",
                list_or_dash(&vips),
                list_or_dash(&rules)
            )
        }
        "publicipaddresses" => props["ipAddress"].as_str().unwrap_or("-").to_string(),
        "loadbalancermuxes" => {
            let rc = &props["routerConfiguration"];
            let peers = strs(&rc["peerRouterConfigurations"], "/routerIPAddress");
            format!("asn {} peers {}", rc["localASN"], list_or_dash(&peers))
        }
        "logicalnetworks" | "virtualnetworks" => {
            list_or_dash(&strs(&props["subnets"], "/properties/addressPrefix"))
        }
        "networkinterfaces" => list_or_dash(&strs(
            &props["ipConfigurations"],
            "/properties/privateIPAddress",
        )),
        _ => String::new(),
    }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

/// Aligned columns with a header.
fn table(collection: &str, docs: &[Value]) -> String {
    let rows: Vec<[String; 3]> = docs
        .iter()
        .map(|d| {
            let id = d["resourceId"]
                .as_str()
                .or_else(|| d["resourceRef"].as_str())
                .unwrap_or("-")
                .to_string();
            let state = d["properties"]["provisioningState"]
                .as_str()
                .unwrap_or("-")
                .to_string();
            [id, state, detail(collection, d)]
        })
        .collect();
    let header = ["ID", "STATE", "DETAIL"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    let mut out = format!("{:w0$}  {:w1$}  {}\n", header[0], header[1], header[2]);
    for r in &rows {
        out.push_str(format!("{:w0$}  {:w1$}  {}", r[0], r[1], r[2]).trim_end());
        out.push('\n');
    }
    out
}
