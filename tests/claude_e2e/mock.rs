//! A mock of the Anthropic Messages API on 127.0.0.1 for driving the real
//! `claude -p`: `POST /v1/messages?beta=true` with `stream: true` gets the
//! next scripted assistant turn as server-sent events (message_start,
//! content_block_start/delta/stop, message_delta, message_stop), the same
//! shapes the real API streams. Requests without tools (side queries) and
//! requests after the script ran out get a plain text turn. Every request
//! body is recorded for the test to inspect (tool results, hook context).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

#[derive(Default)]
struct State {
    script: Vec<Vec<Value>>,
    next: usize,
    requests: Vec<(String, Value)>,
}

pub struct Mock {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

/// One assistant turn that calls `name` with `input`.
pub fn tool_use(id: &str, name: &str, input: Value) -> Vec<Value> {
    vec![json!({"type": "tool_use", "id": id, "name": name, "input": input})]
}

impl Mock {
    /// Start serving `script` (one entry per assistant turn).
    pub fn start(script: Vec<Vec<Value>>) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            script,
            ..State::default()
        }));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        Mock { port, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Bodies of the main conversation's requests (those with tools).
    pub fn conversation(&self) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|(p, b)| p.starts_with("/v1/messages") && b.get("tools").is_some())
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Paths of every request made.
    pub fn paths(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.requests.iter().map(|(p, _)| p.clone()).collect()
    }

    /// How many scripted turns were served.
    pub fn turns_served(&self) -> usize {
        self.state.lock().unwrap().next
    }

    /// The `tool_result` for `id` in the last request: (text, is_error).
    pub fn tool_result(&self, id: &str) -> Option<(String, bool)> {
        let last = self.conversation().pop()?;
        for m in last["messages"].as_array()? {
            for block in m["content"].as_array().into_iter().flatten() {
                if block["type"] == "tool_result" && block["tool_use_id"] == id {
                    let text = match &block["content"] {
                        Value::String(s) => s.clone(),
                        Value::Array(parts) => parts
                            .iter()
                            .filter_map(|p| p["text"].as_str())
                            .collect::<Vec<_>>()
                            .join("\n"),
                        other => other.to_string(),
                    };
                    return Some((text, block["is_error"] == true));
                }
            }
        }
        None
    }

    /// Everything the model was sent in the last request, as text.
    pub fn last_request_text(&self) -> String {
        self.conversation()
            .pop()
            .map(|b| b["messages"].to_string())
            .unwrap_or_default()
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut len = 0usize;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some((path, body)))
}

fn serve(conn: TcpStream, st: &Mutex<State>) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some((path, body)) = read_request(&mut r)? {
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let reply = {
            let mut st = st.lock().unwrap();
            st.requests.push((path.clone(), req.clone()));
            if !path.starts_with("/v1/messages") || path.contains("count_tokens") {
                None
            } else {
                let main = req.get("tools").is_some_and(|t| t.is_array());
                let blocks = if main && st.next < st.script.len() {
                    st.next += 1;
                    st.script[st.next - 1].clone()
                } else {
                    vec![json!({"type": "text", "text": "done"})]
                };
                Some((blocks, st.requests.len()))
            }
        };
        let Some((blocks, n)) = reply else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")?;
            continue;
        };
        let model = req["model"].as_str().unwrap_or("claude-test").to_string();
        // A message id of its own per reply: Claude Code joins streamed
        // parts that share an id into one message.
        let id = format!("msg_mock_{n}");
        let (ctype, payload) = if req["stream"] == true {
            ("text/event-stream", sse(&blocks, &model, &id))
        } else {
            (
                "application/json",
                message(&blocks, &model, &id).to_string(),
            )
        };
        write!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\nrequest-id: req_mock\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        )?;
        out.write_all(payload.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

fn stop_reason(blocks: &[Value]) -> &'static str {
    if blocks.iter().any(|b| b["type"] == "tool_use") {
        "tool_use"
    } else {
        "end_turn"
    }
}

fn message(blocks: &[Value], model: &str, id: &str) -> Value {
    json!({
        "id": id, "type": "message", "role": "assistant", "model": model,
        "content": blocks, "stop_reason": stop_reason(blocks), "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": 5}
    })
}

fn sse(blocks: &[Value], model: &str, id: &str) -> String {
    let mut events: Vec<(&str, Value)> = Vec::new();
    let mut start = message(&[], model, id);
    start["stop_reason"] = Value::Null;
    events.push((
        "message_start",
        json!({"type": "message_start", "message": start}),
    ));
    for (i, b) in blocks.iter().enumerate() {
        let (first, delta) = if b["type"] == "tool_use" {
            (
                json!({"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": b["input"].to_string()}),
            )
        } else {
            (
                json!({"type": "text", "text": ""}),
                json!({"type": "text_delta", "text": b["text"]}),
            )
        };
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": i, "content_block": first}),
        ));
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": i, "delta": delta}),
        ));
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(blocks), "stop_sequence": null}, "usage": {"output_tokens": 5}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
        .into_iter()
        .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
        .collect()
}
