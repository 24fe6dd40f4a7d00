//! Test configs built from named pieces, so no test file carries its own
//! forty lines of TOML: two regions (`eu-west` primary, `us-east`), services
//! by tier, tokens, object stores, and room for the one odd line a test is
//! about ([`TestConfig::raw`]). The text is what an operator would write;
//! it goes through the real parser ([`TestConfig::parse`]), never around it.

use std::path::{Path, PathBuf};

/// The primary and DR regions of every built config.
pub const PRIMARY_REGION: &str = "eu-west";
pub const DR_REGION: &str = "us-east";

/// Where an API token's secret comes from.
pub enum TokenSecret<'a> {
    /// `secret_file = "…"`, relative to the config's directory.
    File(&'a str),
    /// `secret_env = "…"`.
    Env(&'a str),
}

/// A config under construction; sections come out in a valid order.
#[derive(Default)]
pub struct TestConfig {
    store: Option<String>,
    api: Vec<String>,
    tokens: Vec<String>,
    sections: Vec<String>,
    object_stores: Vec<String>,
    services: Vec<Service>,
    raw: Vec<String>,
}

impl TestConfig {
    /// Two regions and nothing else yet.
    pub fn new() -> TestConfig {
        TestConfig::default()
    }

    /// `[store] url = "…"` (the default is an in-memory-like SQLite beside
    /// the config when left out).
    pub fn store_url(mut self, url: &str) -> Self {
        self.store = Some(format!("[store]\nurl = \"{url}\"\n"));
        self
    }

    /// One line of `[api]`, e.g. `anonymous = "viewer"`.
    pub fn api(mut self, line: &str) -> Self {
        self.api.push(line.to_string());
        self
    }

    /// An `[[api.tokens]]` entry.
    pub fn token(mut self, name: &str, role: &str, secret: TokenSecret<'_>) -> Self {
        let secret = match secret {
            TokenSecret::File(path) => format!("secret_file = \"{path}\""),
            TokenSecret::Env(var) => format!("secret_env = \"{var}\""),
        };
        self.tokens.push(format!(
            "[[api.tokens]]\nname = \"{name}\"\nrole = \"{role}\"\n{secret}\n"
        ));
        self
    }

    /// A whole top-level section such as `[monitor]\ninterval = "500ms"`.
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.trim().to_string() + "\n");
        self
    }

    /// A local-directory object store.
    pub fn local_object_store(mut self, name: &str, path: &str) -> Self {
        self.object_stores.push(format!(
            "[[object_stores]]\nname = \"{name}\"\nkind = \"local\"\npath = \"{path}\"\n"
        ));
        self
    }

    pub fn service(mut self, service: Service) -> Self {
        self.services.push(service);
        self
    }

    /// Text appended as it is (a test's odd case: a bad key, an extra table).
    pub fn raw(mut self, text: &str) -> Self {
        self.raw.push(text.to_string());
        self
    }

    /// The config file's text.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        if let Some(store) = &self.store {
            out += store;
            out += "\n";
        }
        if !self.api.is_empty() {
            out += "[api]\n";
            for line in &self.api {
                out += line;
                out += "\n";
            }
            out += "\n";
        }
        for piece in self.tokens.iter().chain(&self.sections) {
            out += piece;
            out += "\n";
        }
        out += &format!(
            "[[regions]]\nname = \"{PRIMARY_REGION}\"\n[[regions]]\nname = \"{DR_REGION}\"\n\n"
        );
        for piece in &self.object_stores {
            out += piece;
            out += "\n";
        }
        for service in &self.services {
            out += &service.toml();
            out += "\n";
        }
        for piece in &self.raw {
            out += piece;
            out += "\n";
        }
        out
    }

    /// Writes `drctl.toml` into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("drctl.toml");
        std::fs::write(&path, self.toml()).expect("writing the test config");
        path
    }

    /// Parses the text as the daemon would (relative paths from `dir`).
    pub fn parse(&self, dir: &Path) -> drctl_config::Config {
        let text = self.toml();
        drctl_config::parse("drctl.toml", &text, dir)
            .unwrap_or_else(|e| panic!("the test config is invalid:\n{e}\n{text}"))
    }
}

/// One `[[services]]` entry over both regions, primary in `eu-west`.
pub struct Service {
    name: String,
    keys: Vec<String>,
    tables: Vec<String>,
}

impl Service {
    pub fn new(name: &str, tier: &str) -> Service {
        Service {
            name: name.to_string(),
            keys: vec![format!("tier = \"{tier}\"")],
            tables: Vec::new(),
        }
    }

    pub fn hot(name: &str) -> Service {
        Service::new(name, "hot")
    }

    pub fn cold(name: &str) -> Service {
        Service::new(name, "cold")
    }

    /// A key of the service itself, e.g. `rpo = "5s"`.
    pub fn key(mut self, line: &str) -> Self {
        self.keys.push(line.to_string());
        self
    }

    /// `[services.postgres.REGION]` with one line (`dsn = …`, `dsn_env = …`).
    pub fn postgres(mut self, region: &str, line: &str) -> Self {
        self.tables
            .push(format!("[services.postgres.{region}]\n{line}\n"));
        self
    }

    /// A PostgreSQL in each region at a loopback port where nothing
    /// answers (connect timeout 1 s): for tests of everything but sampling.
    pub fn unreachable_postgres(self, primary_port: u16, dr_port: u16) -> Self {
        let db = self.name.clone();
        let dsn =
            |port: u16| format!("dsn = \"postgres://app@127.0.0.1:{port}/{db}?connect_timeout=1\"");
        let (primary, dr) = (dsn(primary_port), dsn(dr_port));
        self.postgres(PRIMARY_REGION, &primary)
            .postgres(DR_REGION, &dr)
    }

    /// A sub-table of the service, e.g. `[services.backup]` with its lines.
    pub fn table(mut self, text: &str) -> Self {
        self.tables.push(text.trim().to_string() + "\n");
        self
    }

    fn toml(&self) -> String {
        let mut out = format!(
            "[[services]]\nname = \"{}\"\nregions = [\"{PRIMARY_REGION}\", \"{DR_REGION}\"]\nprimary = \"{PRIMARY_REGION}\"\n",
            self.name
        );
        for key in &self.keys {
            out += key;
            out += "\n";
        }
        for table in &self.tables {
            out += table;
        }
        out
    }
}
