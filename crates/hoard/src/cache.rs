//! `hoard cache ls | rm | usage`: a server's caches through its management API
//! (docs/management-api.md), as a table or, with `--json`, as the API's JSON.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args)]
pub struct CacheArgs {
    /// The server's URL
    #[arg(
        long,
        env = "HOARD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// The admin token, or a token of the namespace
    #[arg(long, env = "HOARD_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// List a namespace's caches, most recently used first
    Ls {
        /// The namespace (a tenant, a repository id, or `default`)
        #[arg(long, short)]
        namespace: String,
        /// Only keys starting with this
        #[arg(long, short)]
        key: Option<String>,
        /// Only caches saved from this ref, e.g. refs/heads/main
        #[arg(long, short)]
        r#ref: Option<String>,
        /// created_at, last_accessed_at or size_in_bytes
        #[arg(long, short = 'S', default_value = "last_accessed_at")]
        sort: String,
        /// asc or desc
        #[arg(long, short, default_value = "desc")]
        order: String,
        /// At most this many
        #[arg(long, short = 'L', default_value_t = 30)]
        limit: usize,
    },
    /// Delete caches: one by id, or every cache with a key (in one ref or all)
    Rm {
        #[arg(long, short)]
        namespace: String,
        /// The cache's id (from `ls`)
        #[arg(long, conflicts_with_all = ["key", "ref"], required_unless_present = "key")]
        id: Option<i64>,
        /// Every cache with exactly this key
        #[arg(long, short)]
        key: Option<String>,
        /// With --key: only in this ref
        #[arg(long, short, requires = "key")]
        r#ref: Option<String>,
    },
    /// Bytes and caches: of one namespace, or of each (admin token)
    Usage {
        #[arg(long, short)]
        namespace: Option<String>,
    },
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A path segment with everything but unreserved characters percent-encoded
/// (namespaces may hold `/`).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(u16, Value)> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                q.append_pair(k, v);
            }
            url = format!("{url}?{}", q.finish());
        }
        let mut request = self
            .http
            .request(method, url)
            .header("accept", "application/vnd.github+json");
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("asking {}", self.base))?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        if status >= 400 {
            let message = value["message"].as_str().unwrap_or("no message");
            bail!("the server answered {status}: {message}");
        }
        Ok((status, value))
    }
}

fn namespace_path(ns: &str) -> String {
    format!("/_hoard/api/namespaces/{}", segment(ns))
}

pub async fn run(args: CacheArgs) -> Result<()> {
    let api = Api {
        http: reqwest::Client::new(),
        base: args.url.trim_end_matches('/').to_string(),
        token: args.token.filter(|t| !t.is_empty()),
    };
    match args.action {
        Action::Ls {
            namespace,
            key,
            r#ref,
            sort,
            order,
            limit,
        } => {
            let mut caches: Vec<Value> = Vec::new();
            let mut page = 1;
            let mut total = 0;
            while caches.len() < limit {
                let mut q = vec![
                    ("per_page", limit.min(100).to_string()),
                    ("page", page.to_string()),
                    ("sort", sort.clone()),
                    ("direction", order.clone()),
                ];
                if let Some(k) = &key {
                    q.push(("key", k.clone()));
                }
                if let Some(r) = &r#ref {
                    q.push(("ref", r.clone()));
                }
                let (_, v) = api
                    .call(
                        reqwest::Method::GET,
                        &format!("{}/caches", namespace_path(&namespace)),
                        &q,
                    )
                    .await?;
                total = v["total_count"].as_u64().unwrap_or(0);
                let got = v["actions_caches"].as_array().cloned().unwrap_or_default();
                if got.is_empty() {
                    break;
                }
                caches.extend(got);
                page += 1;
            }
            caches.truncate(limit);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&caches)?);
            } else {
                print_caches(&caches);
                println!("{} of {total} caches", caches.len());
            }
        }
        Action::Rm {
            namespace,
            id,
            key,
            r#ref,
        } => {
            let base = format!("{}/caches", namespace_path(&namespace));
            let deleted = match (id, key) {
                (Some(id), _) => {
                    api.call(reqwest::Method::DELETE, &format!("{base}/{id}"), &[])
                        .await?;
                    serde_json::json!({"total_count": 1, "actions_caches": [{"id": id}]})
                }
                (None, Some(key)) => {
                    let mut q = vec![("key", key)];
                    if let Some(r) = r#ref {
                        q.push(("ref", r));
                    }
                    api.call(reqwest::Method::DELETE, &base, &q).await?.1
                }
                (None, None) => bail!("say --id or --key"),
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&deleted)?);
            } else {
                println!("deleted {} caches", deleted["total_count"]);
            }
        }
        Action::Usage { namespace } => {
            let rows: Vec<Value> = match &namespace {
                Some(ns) => {
                    let path = format!("{}/cache/usage", namespace_path(ns));
                    vec![api.call(reqwest::Method::GET, &path, &[]).await?.1]
                }
                None => {
                    let mut rows = Vec::new();
                    for page in 1.. {
                        let q = [("per_page", "100".to_string()), ("page", page.to_string())];
                        let (_, v) = api
                            .call(
                                reqwest::Method::GET,
                                "/_hoard/api/cache/usage-by-namespace",
                                &q,
                            )
                            .await?;
                        let got = v["repository_cache_usages"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        if got.is_empty() {
                            break;
                        }
                        rows.extend(got);
                    }
                    rows
                }
            };
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<40} {:>10} {:>16}", "NAMESPACE", "CACHES", "BYTES");
                let (mut n, mut b) = (0, 0);
                for r in &rows {
                    let count = r["active_caches_count"].as_u64().unwrap_or(0);
                    let bytes = r["active_caches_size_in_bytes"].as_u64().unwrap_or(0);
                    n += count;
                    b += bytes;
                    println!(
                        "{:<40} {count:>10} {bytes:>16}",
                        r["full_name"].as_str().unwrap_or("")
                    );
                }
                if namespace.is_none() {
                    println!("{:<40} {n:>10} {b:>16}", "total");
                }
            }
        }
    }
    Ok(())
}

fn print_caches(caches: &[Value]) {
    println!(
        "{:>8}  {:<48} {:<24} {:>12}  {:<20}  {:<20}",
        "ID", "KEY", "REF", "SIZE", "CREATED", "LAST ACCESSED"
    );
    for c in caches {
        println!(
            "{:>8}  {:<48} {:<24} {:>12}  {:<20}  {:<20}",
            c["id"],
            c["key"].as_str().unwrap_or(""),
            c["ref"].as_str().unwrap_or(""),
            c["size_in_bytes"],
            c["created_at"].as_str().unwrap_or(""),
            c["last_accessed_at"].as_str().unwrap_or(""),
        );
    }
}
