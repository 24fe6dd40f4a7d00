//! `[[webhooks]]`: where alerts go, in which format, for which kinds.

use std::path::Path;

use super::common::{at_most_one, declared_tables, key_env_name, key_file, Declared, NameKind};
use crate::model::{AlertKind, KeySource, WebhookConfig, WebhookFormat, WebhookUrl};
use crate::reader::{Cx, Table};
use crate::schema::{key, DefaultValue as D, Kind as K, Section};
use crate::secret::Secret;
use crate::suggest;

pub(crate) const WEBHOOKS: Section = Section {
    header: "[[webhooks]]",
    doc: "One alert destination: a URL that takes a POST per event. Set exactly one of `url`, `url_env` and `url_file` (a Slack URL is itself a secret: prefer a file).",
    keys: &[
        key("name", K::String, D::Required, "`[a-z0-9-]+`, unique."),
        key("url", K::String, D::Unset, "The `https://` or `http://` URL, written in the file (shown as `***`)."),
        key("url_env", K::EnvVar, D::Unset, "An environment variable holding the URL."),
        key("url_file", K::Path, D::Unset, "A file holding the URL."),
        key("format", K::Choice(&["json", "slack"]), D::Text("json"), "`json` posts drctl's event as JSON; `slack` posts `{\"text\": …}` (Slack, Mattermost, Rocket.Chat)."),
        key("events", K::Strings, D::Derived("every kind"), "The kinds of event sent: `breach`, `evidence`, `backup`, `operation`."),
    ],
};

/// `[[webhooks]]`: where alerts go.
pub(crate) fn webhooks(
    cx: &mut Cx,
    root: &Table,
    base_dir: &Path,
) -> Option<Vec<Declared<WebhookConfig>>> {
    declared_tables(
        cx,
        root,
        "webhooks",
        NameKind::Webhook,
        "write each webhook as a [[webhooks]] table",
        |cx, table| webhook(cx, table, base_dir),
        |name, (url, format, events)| WebhookConfig {
            name,
            url,
            format,
            events,
        },
    )
}

pub(crate) fn webhook(
    cx: &mut Cx,
    table: &Table,
    base_dir: &Path,
) -> Option<(WebhookUrl, WebhookFormat, Vec<AlertKind>)> {
    cx.unknown_keys(table, &WEBHOOKS.names());
    let url = match at_most_one(
        cx,
        table,
        &["url", "url_env", "url_file"],
        "keep one: the URL, the name of an environment variable holding it, or a file holding it",
    ) {
        None => None,
        Some(None) => {
            cx.error(
                &table.span,
                &table.path,
                "the webhook has no URL",
                Some("add url_file = \"secrets/slack-webhook\" (a Slack URL is a secret), url_env = \"DRCTL_WEBHOOK_URL\" or url = \"https://…\"".into()),
            );
            None
        }
        Some(Some(field)) => {
            let value = cx.string(&field)?;
            match field.key {
                "url" => {
                    let ok =
                        value.value.starts_with("https://") || value.value.starts_with("http://");
                    if ok {
                        Some(WebhookUrl::Inline(Secret::opaque(value.value)))
                    } else {
                        cx.error(
                            &value.span,
                            &field.path,
                            "the URL does not start with https:// or http://",
                            Some(
                                "write the whole URL, e.g. \"https://hooks.example.com/drctl\""
                                    .into(),
                            ),
                        );
                        None
                    }
                }
                "url_env" => key_env_name(cx, value, &field.path, "DRCTL_WEBHOOK_URL")
                    .map(|v| WebhookUrl::Source(KeySource::Env(v))),
                _ => key_file(cx, value, &field.path, base_dir, "the webhook URL")
                    .map(|p| WebhookUrl::Source(KeySource::File(p))),
            }
        }
    };
    let format = match table.get("format") {
        None => Some(WebhookFormat::Json),
        Some(field) => {
            let text = cx.string(&field)?;
            match text.value.as_str() {
                "json" => Some(WebhookFormat::Json),
                "slack" => Some(WebhookFormat::Slack),
                other => {
                    let hint = suggest::hint(other, ["json", "slack"])
                        .unwrap_or_else(|| "json sends drctl's event as JSON; slack sends {\"text\": …} (Slack, Mattermost, Rocket.Chat)".into());
                    cx.error(
                        &text.span,
                        &field.path,
                        format!("{other:?} is not json or slack"),
                        Some(hint),
                    );
                    None
                }
            }
        }
    };
    let events = match table.get("events") {
        None => Some(Vec::new()),
        Some(field) => {
            let names = AlertKind::ALL.map(AlertKind::as_str);
            let list = cx.array(&field, "e.g. events = [\"breach\", \"operation\"]")?;
            let mut kinds = Vec::new();
            let mut ok = true;
            for element in list {
                let Some(item) = cx.string(&element) else {
                    ok = false;
                    continue;
                };
                match AlertKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == item.value)
                {
                    Some(k) => kinds.push(k),
                    None => {
                        ok = false;
                        let hint = suggest::hint(&item.value, names)
                            .unwrap_or_else(|| format!("the kinds are {}", names.join(", ")));
                        cx.error(
                            &item.span,
                            &element.path,
                            format!("{:?} is not a kind of alert", item.value),
                            Some(hint),
                        );
                    }
                }
            }
            ok.then_some(kinds)
        }
    };
    Some((url?, format?, events?))
}
