//! The `user`, `token` and `org` commands (DESIGN §3.1): user management on the store the config
//! names, through the same operations the API uses (`portcullis::users`), so a password set
//! or a suspension here revokes exactly as the API does, on every replica sharing the store.
//!
//! Passwords are read from stdin (the first line) and never echoed or logged; a token is
//! printed alone on stdout, so that `TOKEN=$(portcullis token create …)` works. Every failure
//! is one line on stderr and exit code 1.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use time::OffsetDateTime;
use uuid::Uuid;

use portcullis::auth::Passwords;
use portcullis::config::{Config, LogConfig, StoreUrl, CONFIG_ENV};
use portcullis::http::api::directory::parse_search;
use portcullis::report::ErrorChain;
use portcullis::store::{LoginType, Organization, Store, StoreError, User, UserStatus};
use portcullis::users::{is_name, NewKey, NewUser, UserError, Users};

/// Shown under `user --help` and `token --help`.
const STORE_NOTE: &str = "These commands act on the store named by store.url in the config. \
With memory:// that is a store of this command's own process, which is gone when it exits: \
use them with a Redis store shared with the running Portcullis replicas.";

/// Only the user operations' own warnings (an invalidation that could not be published) are
/// shown; `RUST_LOG` can ask for more.
const LOG_FILTER: &str = "off,portcullis::users=warn";

/// `portcullis user …`.
#[derive(Subcommand)]
#[command(after_help = STORE_NOTE)]
pub enum UserCommand {
    /// Create a user, dormant until the first login, in the default organization; the
    /// password is the first line of stdin.
    Create {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// Email address (unique, case-insensitively).
        #[arg(long)]
        email: String,
        /// Username (1-32 letters and digits, single `-` between groups).
        #[arg(long)]
        username: String,
        /// A site role: owner, user-admin, auditor or template-admin (repeatable).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Set a user's password (the first line of stdin) and revoke every session and token of
    /// that user.
    SetPassword {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// A username, an email or a user id.
        #[arg(long)]
        user: String,
    },
    /// Suspend a user: every session and token of theirs stops working at once.
    Suspend {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// A username, an email or a user id.
        #[arg(long)]
        user: String,
    },
    /// Re-activate a suspended user.
    Activate {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// A username, an email or a user id.
        #[arg(long)]
        user: String,
    },
    /// List users, one a line: id, username, email, status, site roles (tab-separated), in
    /// Coder's order (by username).
    List {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// Coder's user search, as `GET /users?q=`: `status:active`, `role:owner`,
        /// `login_type:oidc`, `username:U`, `email:E`, and free text (a part of the username
        /// or email).
        #[arg(long)]
        search: Option<String>,
    },
}

/// `portcullis org …`.
#[derive(Subcommand)]
#[command(after_help = STORE_NOTE)]
pub enum OrgCommand {
    /// List organizations, one a line: id, name, display name, `default` or `-`
    /// (tab-separated), oldest first.
    List {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
    },
    /// Create an organization and print its id.
    Create {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// The name (1-32 letters and digits, single `-` between groups; unique,
        /// case-insensitively; not `default`).
        #[arg(long)]
        name: String,
        /// The display name (default: the name).
        #[arg(long)]
        display_name: Option<String>,
        /// A description.
        #[arg(long, default_value = "")]
        description: String,
    },
}

/// `portcullis token …`.
#[derive(Subcommand)]
#[command(after_help = STORE_NOTE)]
pub enum TokenCommand {
    /// Create an API key for a user and print the token alone on stdout.
    Create {
        /// The config file.
        #[arg(long, env = CONFIG_ENV)]
        config: PathBuf,
        /// A username, an email or a user id.
        #[arg(long)]
        user: String,
        /// A scope, such as workspace:read (repeatable; default coder:all).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// How long the token lasts, such as 24h (default: tokens.default_lifetime; at most
        /// tokens.max_lifetime, or tokens.max_admin_lifetime for an owner).
        #[arg(long, value_parser = humantime::parse_duration)]
        lifetime: Option<Duration>,
        /// A name, unique for the user; a named token has login type `token`.
        #[arg(long)]
        name: Option<String>,
    },
}

/// What the store-opening part of a command needs.
struct Context {
    config: Config,
    store: Store,
    passwords: Passwords,
}

// === impl Context ===

impl Context {
    fn users(&self) -> Users<'_> {
        Users::new(&self.store, &self.passwords, &self.config.tokens)
            .with_policy(&self.config.passwords.policy)
    }

    /// The user `who` names, or a one-line error.
    async fn user(&self, who: &str) -> Result<User, String> {
        self.users()
            .find(who)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("no user matches {who:?} (give a username, an email or a user id)")
            })
    }
}

/// Runs a `user` command.
pub fn user(command: UserCommand) -> ExitCode {
    match command {
        UserCommand::Create {
            config,
            email,
            username,
            roles,
        } => run(
            "user create",
            &config,
            true,
            move |cx, password| async move {
                let (user, _) = cx
                    .users()
                    .create(NewUser {
                        email,
                        username,
                        name: String::new(),
                        password,
                        login_type: LoginType::Password,
                        status: UserStatus::Dormant,
                        roles,
                        organization_ids: Vec::new(),
                    })
                    .await
                    .map_err(describe)?;
                Ok(line(&user))
            },
        ),
        UserCommand::SetPassword { config, user } => run(
            "user set-password",
            &config,
            true,
            move |cx, password| async move {
                let target = cx.user(&user).await?;
                let password = password.unwrap_or_default();
                let revoked = cx
                    .users()
                    .set_password(target.id, &password)
                    .await
                    .map_err(describe)?;
                Ok(format!(
                    "password set for {}; {revoked} API key(s) revoked",
                    target.username
                ))
            },
        ),
        UserCommand::Suspend { config, user } => {
            status("user suspend", &config, user, UserStatus::Suspended)
        }
        UserCommand::Activate { config, user } => {
            status("user activate", &config, user, UserStatus::Active)
        }
        UserCommand::List { config, search } => {
            run("user list", &config, false, |cx, _| async move {
                let query = parse_search(search.as_deref().unwrap_or("")).map_err(|invalid| {
                    let why: Vec<String> = invalid
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.detail))
                        .collect();
                    format!("--search: {}", why.join("; "))
                })?;
                let page = cx
                    .store
                    .list_users(&query)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(page.users.iter().map(line).collect::<Vec<_>>().join("\n"))
            })
        }
    }
}

/// Runs an `org` command.
pub fn org(command: OrgCommand) -> ExitCode {
    match command {
        OrgCommand::List { config } => run("org list", &config, false, |cx, _| async move {
            let mut orgs = cx.store.orgs().await.map_err(|e| e.to_string())?;
            orgs.sort_by_key(|o| (o.created_at, o.id));
            let lines: Vec<String> = orgs
                .iter()
                .map(|o| {
                    let default = if o.is_default { "default" } else { "-" };
                    format!("{}\t{}\t{}\t{default}", o.id, o.name, o.display_name)
                })
                .collect();
            Ok(lines.join("\n"))
        }),
        OrgCommand::Create {
            config,
            name,
            display_name,
            description,
        } => run("org create", &config, false, |cx, _| async move {
            if !is_name(&name) || name == "default" {
                return Err(format!(
                    "--name: {name:?} is not an organization name (1-32 letters and digits, \
                     single - between groups, not new, create or default)"
                ));
            }
            let now = OffsetDateTime::now_utc();
            let org = Organization {
                id: Uuid::new_v4(),
                display_name: display_name.unwrap_or_else(|| name.clone()),
                name,
                description,
                is_default: false,
                created_at: now,
                updated_at: now,
            };
            match cx.store.create_org(&org).await {
                Ok(()) => Ok(org.id.to_string()),
                Err(StoreError::Conflict { .. }) => Err(format!(
                    "an organization named {:?} already exists",
                    org.name
                )),
                Err(e) => Err(ErrorChain(&e).to_string()),
            }
        }),
    }
}

/// Runs a `token` command.
pub fn token(command: TokenCommand) -> ExitCode {
    match command {
        TokenCommand::Create {
            config,
            user,
            scopes,
            lifetime,
            name,
        } => run("token create", &config, false, move |cx, _| async move {
            let target = cx.user(&user).await?;
            let users = cx.users();
            let lifetime = users.token_lifetime(&target, lifetime).map_err(describe)?;
            let name = name.unwrap_or_default();
            let login_type = if name.is_empty() {
                LoginType::Password
            } else {
                LoginType::Token
            };
            users
                .issue_key(
                    &target,
                    NewKey {
                        login_type,
                        lifetime,
                        scopes,
                        token_name: name,
                        ip_address: String::new(),
                        allow_list: Vec::new(),
                        not_after: None,
                    },
                )
                .await
                .map_err(describe)
        }),
    }
}

fn status(what: &'static str, config: &Path, user: String, status: UserStatus) -> ExitCode {
    run(what, config, false, move |cx, _| async move {
        let target = cx.user(&user).await?;
        let user = cx
            .users()
            .set_status(target.id, status)
            .await
            .map_err(describe)?;
        Ok(line(&user))
    })
}

/// Loads the config, reads the password from stdin when `password` is set, opens the store,
/// runs `body`, and prints its output (stdout) or its error (stderr, exit 1).
fn run<F, Fut>(what: &str, config: &Path, password: bool, body: F) -> ExitCode
where
    F: FnOnce(Context, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let result = prepare(config, password).and_then(|(config, password)| {
        super::runtime(1)?.block_on(async move {
            let store =
                Store::open(&config.store).map_err(|e| format!("store.url: {}", ErrorChain(&e)))?;
            let passwords =
                Passwords::new(config.passwords.params).map_err(|e| format!("passwords: {e}"))?;
            body(
                Context {
                    config,
                    store,
                    passwords,
                },
                password,
            )
            .await
        })
    });
    match result {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::from(1)
        }
    }
}

fn prepare(path: &Path, password: bool) -> Result<(Config, Option<String>), String> {
    let config = super::load(path).map_err(|e| format!("config error: {e}"))?;
    portcullis::logging::init(&LogConfig {
        format: config.log.format,
        filter: LOG_FILTER.to_owned(),
        access: false,
    });
    if config.store.url == StoreUrl::Memory {
        eprintln!(
            "note: store.url is memory://, a store of this process only: this change is lost when it exits"
        );
    }
    let password = if password {
        Some(read_password()?)
    } else {
        None
    };
    Ok((config, password))
}

/// The first line of stdin, without its line ending.
fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("could not read the password from stdin: {e}"))?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        return Err("no password on stdin (its first line is the password)".into());
    }
    Ok(password.to_owned())
}

/// One line of `user list`.
fn line(user: &User) -> String {
    let roles = if user.roles.is_empty() {
        "-".to_owned()
    } else {
        user.roles.join(",")
    };
    format!(
        "{}\t{}\t{}\t{}\t{}",
        user.id,
        user.username,
        user.email,
        user.status.as_str(),
        roles
    )
}

fn describe(e: UserError) -> String {
    ErrorChain(&e).to_string()
}

/// `portcullis explain`: what Portcullis would do with a request, sending nothing upstream.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The config file.
    #[arg(long, env = CONFIG_ENV)]
    config: PathBuf,
    /// The request's method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request target: a path, optionally with a query.
    #[arg(long)]
    path: String,
    /// A session token or API key, authenticated against the configured store.
    #[arg(long, conflicts_with = "user")]
    token: Option<String>,
    /// Judge as this user's session with full scope (a username, an email or a user id).
    #[arg(long)]
    user: Option<String>,
    /// A request header, `Name: value` (repeatable; repeat a name for several values).
    #[arg(long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// The client's address, judged against server.trusted_proxies (default 192.0.2.10).
    #[arg(long)]
    peer: Option<std::net::IpAddr>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `explain`: exit 0 with the explanation (whatever the decision), 1 when the question
/// could not be answered (bad config, bad header, unknown user, store down).
pub fn explain(args: ExplainArgs) -> ExitCode {
    use portcullis::http::explain::{self, Question, Values};

    let mut headers = std::collections::BTreeMap::<String, Values>::new();
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            eprintln!("explain: --header {header:?} is not NAME:VALUE");
            return ExitCode::from(1);
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        let entry = headers.remove(&name);
        let values = match entry {
            None => Values::One(value),
            Some(Values::One(first)) => Values::Many(vec![first, value]),
            Some(Values::Many(mut all)) => {
                all.push(value);
                Values::Many(all)
            }
        };
        headers.insert(name, values);
    }
    let question = Question {
        method: args.method,
        path: args.path,
        headers,
        token: args.token,
        user: args.user,
        peer: args.peer,
    };
    let answer = super::load(&args.config).and_then(|config| {
        portcullis::logging::init(&LogConfig {
            format: config.log.format,
            filter: LOG_FILTER.to_owned(),
            access: false,
        });
        super::runtime(1)?.block_on(async {
            let app = portcullis::App::new(config).map_err(|e| e.to_string())?;
            explain::explain(&app, &question).await.map_err(|e| {
                let status = e.status();
                let body = e.into_response().into_body().into_full_bytes();
                let text = body.map(|b| String::from_utf8_lossy(&b).into_owned());
                format!("{status}: {}", text.unwrap_or_default())
            })
        })
    });
    match answer {
        Ok(answer) if args.json => match serde_json::to_string_pretty(&answer) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("explain: {e}");
                ExitCode::from(1)
            }
        },
        Ok(answer) => {
            print!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("explain: {e}");
            ExitCode::from(1)
        }
    }
}
