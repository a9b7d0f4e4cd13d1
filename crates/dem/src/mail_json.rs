//! JSON shapes of mails for `--json` output: flags as names, ids and dates
//! as plain fields, so scripts need not know the WIT encoding. A read
//! mail adds what its message shows (`dem_message::render`): header
//! fields, the text as `body`, and the attachments with their decoded
//! sizes; `parts` lists the large parts that travel as floating
//! attachments (their `id` is what `dem attachment get` takes).

use serde_json::{Value, json};

use dem_message::Rendered;
use dem_proto::mail::{AttachmentRef, MailDetail, MailSummary};

/// A floating attachment: a large part of a message, stored apart.
pub fn attachment(a: &AttachmentRef) -> Value {
    json!({
        "id": a.hash,
        "name": a.name,
        "media_type": a.media_type,
        "size": a.size_bytes,
        "splice_at": a.splice_at,
    })
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

/// Header fields as `[name, value]` pairs, in order.
pub fn headers(headers: &[(String, String)]) -> Value {
    headers.iter().map(|(n, v)| json!([n, v])).collect()
}

/// Text with its CRLF line breaks (as a message carries them) as LF, as
/// the user wrote them; the exact bytes are what `read --raw` gives.
pub fn lf_lines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// One mail: its summary, references and parts; with `shown` (the
/// rendered message), also its header fields, `body` (the text, or the
/// HTML as text), `html`, and `attachments` as the message has them (name,
/// media type, decoded size, and the `id` of the floating part that holds
/// one when there is one). Without it, `attachments` lists the parts.
/// Line breaks in `body` and `html` are LF.
pub fn detail(d: &MailDetail, shown: Option<&Rendered>) -> Value {
    let mut v = summary(&d.summary);
    v["size_bytes"] = json!(d.summary.size_bytes);
    v["references"] = json!(d.references);
    v["stored"] = json!({ "hash": d.message.hash, "size": d.message.size_bytes });
    v["parts"] = d.attachments.iter().map(attachment).collect();
    let Some(r) = shown else {
        v["attachments"] = v["parts"].clone();
        return v;
    };
    v["headers"] = headers(&r.headers);
    let body = r.text.as_deref().map(lf_lines).unwrap_or_default();
    v["body_size"] = json!(body.len());
    v["body"] = Value::String(body);
    if let Some(html) = &r.html {
        v["html"] = Value::String(lf_lines(html));
    }
    let mut unused: Vec<&AttachmentRef> = d
        .attachments
        .iter()
        .filter(|a| a.splice_at.is_some())
        .collect();
    v["attachments"] = r
        .attachments
        .iter()
        .map(|info| {
            // The part cut out for this attachment, if one was: a cut is
            // named by the part's file name and has its media type.
            let part = unused.iter().position(|a| {
                info.name.as_deref() == Some(a.name.as_str()) && a.media_type == info.media_type
            });
            let id = part.map(|i| unused.remove(i).hash.clone());
            json!({
                "id": id,
                "name": info.name,
                "media_type": info.media_type,
                "size": info.size_bytes,
            })
        })
        .collect();
    v
}
