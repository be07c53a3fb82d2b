//! Alerts on reload (Reloader's `ALERT_*`): the message and each sink's payload. Names and keys
//! only, never a value or a digest.

use std::fmt;

use serde_json::json;

/// Where alerts go, as `ALERT_SINK` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertSink {
    Slack,
    Teams,
    GoogleChat,
    /// Any other value: the message as plain text (Reloader's raw webhook).
    Webhook,
}

impl AlertSink {
    /// Reloader's reading of `ALERT_SINK`: trimmed, case-insensitive; `slack`, `teams`,
    /// `gchat`, and `webhook`/`raw`/empty for the raw webhook. Anything else is the raw webhook
    /// too (as Reloader reads it); the flag says whether the value named a sink.
    pub fn read(s: &str) -> (AlertSink, bool) {
        match s.trim().to_ascii_lowercase().as_str() {
            "slack" => (AlertSink::Slack, true),
            "teams" => (AlertSink::Teams, true),
            "gchat" => (AlertSink::GoogleChat, true),
            "webhook" | "raw" | "" => (AlertSink::Webhook, true),
            _ => (AlertSink::Webhook, false),
        }
    }
}

impl fmt::Display for AlertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertSink::Slack => "slack",
            AlertSink::Teams => "teams",
            AlertSink::GoogleChat => "gchat",
            AlertSink::Webhook => "webhook",
        })
    }
}

/// A request body and its content type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The message for one roll, in Reloader's words (with `*` around names for the chat sinks):
/// which configs changed (and which keys), and which workload was rolled.
pub fn reload_message(
    changes: &str,
    namespace: &str,
    workload_kind: &str,
    workload: &str,
    additional_info: Option<&str>,
) -> String {
    let msg = format!(
        "kreload detected changes in namespace *{namespace}*: {changes}. Hence reloaded \
         *{workload}* of type *{workload_kind}* in namespace *{namespace}*"
    );
    match additional_info.map(str::trim).filter(|i| !i.is_empty()) {
        // As Reloader: e.g. the cluster's name first.
        Some(info) => format!("{info} : {msg}"),
        None => msg,
    }
}

/// The body each sink expects for `message`.
pub fn payload(sink: AlertSink, message: &str) -> Payload {
    let json_body = |v: serde_json::Value| Payload {
        content_type: "application/json",
        body: v.to_string().into_bytes(),
    };
    match sink {
        AlertSink::Slack => json_body(json!({
            "attachments": [{"text": message, "color": "good", "author_name": "kreload"}]
        })),
        AlertSink::Teams | AlertSink::GoogleChat => json_body(json!({"text": message})),
        AlertSink::Webhook => Payload {
            content_type: "text/plain",
            body: message.replace('*', "").into_bytes(),
        },
    }
}

/// What `--webhook-url` receives instead of a roll: Reloader's payload.
pub fn upgrade_webhook_payload() -> Payload {
    Payload {
        content_type: "application/json",
        body: br#"{"webhook":"update successful"}"#.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_are_read_as_reloader_reads_them() {
        for (s, read) in [
            ("slack", (AlertSink::Slack, true)),
            (" Teams ", (AlertSink::Teams, true)),
            ("gchat", (AlertSink::GoogleChat, true)),
            ("webhook", (AlertSink::Webhook, true)),
            ("raw", (AlertSink::Webhook, true)),
            ("", (AlertSink::Webhook, true)),
            ("anything", (AlertSink::Webhook, false)),
        ] {
            assert_eq!(AlertSink::read(s), read, "{s:?}");
        }
    }

    #[test]
    fn each_sink_gets_its_shape() {
        let msg = reload_message(
            "ConfigMap app changed (keys: a)",
            "shop",
            "Deployment",
            "web",
            Some("prod-eu"),
        );
        assert!(
            msg.starts_with("prod-eu : kreload detected changes"),
            "{msg}"
        );
        assert!(msg.contains("*web* of type *Deployment*"), "{msg}");
        let slack: serde_json::Value =
            serde_json::from_slice(&payload(AlertSink::Slack, &msg).body).unwrap();
        assert_eq!(slack["attachments"][0]["text"], msg);
        let teams: serde_json::Value =
            serde_json::from_slice(&payload(AlertSink::Teams, &msg).body).unwrap();
        assert_eq!(teams["text"], msg);
        let raw = payload(AlertSink::Webhook, &msg);
        assert_eq!(raw.content_type, "text/plain");
        assert!(!String::from_utf8(raw.body).unwrap().contains('*'));
        assert_eq!(
            reload_message("c", "n", "Deployment", "w", Some("  ")),
            reload_message("c", "n", "Deployment", "w", None)
        );
    }
}
