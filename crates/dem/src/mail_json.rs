//! JSON shapes of mails for `--json` output: flags as names, ids and dates
//! as plain fields, so scripts need not know the WIT encoding.

use serde_json::{Value, json};

use dem_proto::mail::{AttachmentRef, MailDetail, MailSummary};

pub fn attachment(a: &AttachmentRef) -> Value {
    json!({ "id": a.hash, "name": a.name, "media_type": a.media_type, "size": a.size_bytes })
}

pub fn summary(m: &MailSummary) -> Value {
    json!({
        "id": m.id,
        "uid": m.uid,
        "folder": m.folder,
        "from": m.from,
        "to": m.to,
        "cc": m.cc,
        "subject": m.subject,
        "date": m.date_ms,
        "received": m.received_ms,
        "message_id": m.message_id,
        "in_reply_to": m.in_reply_to,
        "flags": m.flags.names(),
        "keywords": m.keywords,
        "size": m.size_bytes,
        "attachments": m.attachment_count,
        "spam_score": m.spam_score,
    })
}

pub fn detail(d: &MailDetail) -> Value {
    let mut v = summary(&d.summary);
    if let Some(headers) = &d.headers {
        v["headers"] = headers.iter().map(|h| json!([h.name, h.value])).collect();
    }
    if let Some(body) = &d.body {
        v["body"] = Value::String(String::from_utf8_lossy(body).into_owned());
    }
    v["body_size"] = json!(d.body_size_bytes);
    if let Some(atts) = &d.attachments {
        v["attachments"] = atts.iter().map(attachment).collect();
    }
    v
}
