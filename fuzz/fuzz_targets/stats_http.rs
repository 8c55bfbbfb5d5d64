//! The stats page's HTTP server on one request as bytes: the head is cut at the blank line
//! and parsed (`stats::http::parse_head`), the body taken by its `Content-Length`, and the
//! request answered (`stats::http::route`: authentication, the admin form, HTML, CSV,
//! Prometheus) from a fresh generation of `lb_fuzz::CONFIG`, as `stats::http` serves a
//! connection. Never a panic or a hang.
#![no_main]

use lb_user::stats::http::{self, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(head_end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
        return;
    };
    if head_end > MAX_HEAD {
        return;
    }
    let Ok(req) = http::parse_head(&data[..head_end]) else {
        return;
    };
    let body = &data[head_end + 4..];
    if body.len() < req.content_length {
        return; // the server waits for the rest; the client closing ends it
    }
    let gen = lb_fuzz::generation();
    let st = &gen.config.stats[0];
    let resp = http::route(&gen, st, &req, &body[..req.content_length]);
    let _ = resp.encode(req.method == "HEAD");
});
