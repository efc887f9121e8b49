//! A corpus of junk request bodies, generated from a fixed seed: mutations of a valid
//! definition (a node replaced, removed or added) and byte-level damage (truncation,
//! flipped or inserted bytes, invalid UTF-8, deep nesting, NUL characters).

use serde_json::{json, Map, Value};

use crate::harness::TestServer;
use crate::input::assert_error_shape;

/// A small deterministic PRNG (xorshift64*): the corpus is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A valid definition using every feature a mutation can break.
pub fn valid_definition(url: &str) -> Value {
    json!({
        "name": "junk-base",
        "description": "the definition every mutation starts from",
        "on_failure": "compensate",
        "timeout_seconds": 60,
        "agents": {"picker": {"capabilities": ["warehouse"]}},
        "tasks": [
            {"id": "reserve", "kind": "agent", "agent_role": "picker",
             "input": {"order": "${input.order_id}"}, "timeout_seconds": 5,
             "retry": {"max_attempts": 3, "initial_interval_ms": 10, "backoff_coefficient": 2.0, "max_interval_ms": 100},
             "compensate": {"kind": "noop", "input": {"release": "${tasks.reserve.output.reservation}"}}},
            {"id": "charge", "kind": "http", "depends_on": ["reserve"],
             "http": {"method": "POST", "url": url, "headers": {"x-order": "${input.order_id}"},
                      "body": {"amount": "${input.amount}"}}},
            {"id": "wait", "kind": "sleep", "depends_on": ["charge"], "sleep_ms": 5},
            {"id": "done", "kind": "noop", "depends_on": ["wait", "reserve"]}
        ]
    })
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    let scalars = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.5e300),
        json!(""),
        json!("x"),
        json!("${input.order_id}"),
        json!("${tasks.nowhere.output}"),
        json!("${"),
        json!("nul \u{0} inside"),
        json!("é\u{1F600}\u{202E}"),
        json!("agent"),
        json!("reserve"),
        json!("http://127.0.0.1:1/x"),
        json!(" "),
    ];
    match rng.below(if depth > 2 { 1 } else { 4 }) {
        0 => rng.pick(&scalars).clone(),
        1 => Value::Array(
            (0..rng.below(3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        2 => {
            let keys = [
                "id",
                "kind",
                "depends_on",
                "input",
                "tasks",
                "name",
                "url",
                "retry",
                "zzz",
            ];
            let map: Map<String, Value> = (0..rng.below(3))
                .map(|_| ((*rng.pick(&keys)).to_owned(), random_value(rng, depth + 1)))
                .collect();
            Value::Object(map)
        }
        _ => json!("x".repeat(rng.below(2000))),
    }
}

/// Every node of `v` as a JSON pointer.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One structural change somewhere in `v`.
fn mutate(rng: &mut Rng, v: &mut Value) {
    let mut all = Vec::new();
    pointers(v, String::new(), &mut all);
    let target = rng.pick(&all).clone();
    let replacement = random_value(rng, 0);
    let action = rng.below(4);
    let Some(node) = v.pointer_mut(&target) else {
        return;
    };
    match (action, node) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let key = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            m.remove(&key);
        }
        (1, Value::Object(m)) => {
            let keys = [
                "depends_on",
                "compensate",
                "http",
                "retry",
                "sleep_ms",
                "agent_role",
                "input",
                "kind",
            ];
            m.insert((*rng.pick(&keys)).to_owned(), replacement);
        }
        (2, Value::Array(a)) if !a.is_empty() => {
            let i = rng.below(a.len());
            let copy = a[i].clone();
            a.push(copy);
        }
        (_, node) => *node = replacement,
    }
}

/// Byte-level damage to `text`, or bytes that were never JSON.
fn damage(rng: &mut Rng, text: &[u8]) -> Vec<u8> {
    let mut bytes = text.to_vec();
    match rng.below(8) {
        0 => bytes.truncate(rng.below(bytes.len())),
        1 => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        2 => {
            let i = rng.below(bytes.len());
            bytes.insert(i, *rng.pick(b"{}[]\",:\\\x00\xff\xc3 0e-"));
        }
        3 => bytes = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        4 => {
            let depth = 1 + rng.below(5000);
            bytes = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        5 => {
            bytes = rng
                .pick(&[
                    &b""[..],
                    b"   ",
                    b"null",
                    b"[]",
                    b"1",
                    b"\"s\"",
                    b"{}",
                    b"[{}]",
                ])
                .to_vec()
        }
        6 => bytes = b"{\"name\": \"\\ud800\", \"tasks\": []}".to_vec(),
        _ => {
            let i = rng.below(bytes.len());
            bytes.splice(i..i, b"\\u0000".iter().copied());
        }
    }
    bytes
}

/// Scenario 11b: ≥ 200 junk bodies for `POST /api/v1/workflows` and for `POST .../execute`:
/// never a 5xx, every rejection is the error body, and a rejected request appends
/// nothing.
pub async fn junk_bodies_are_rejected_cleanly(s: &TestServer) {
    let base = valid_definition("http://127.0.0.1:9/charge");
    let base_text = serde_json::to_vec(&base).expect("json");
    let mut rng = Rng::new(0x00C0_FFEE_1234_5678);
    let mut head = s.head().await;
    let mut outcomes = [0usize; 2];
    for case in 0..250 {
        let body = if case % 5 < 3 {
            let mut v = base.clone();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut v);
            }
            serde_json::to_vec(&v).expect("json")
        } else {
            damage(&mut rng, &base_text)
        };
        let (status, reply) = s.post_raw("/api/v1/workflows", body.clone()).await;
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        assert!(status < 500, "case {case}: {status} {reply} for {shown}");
        let now = s.head().await;
        if status == 201 {
            assert_eq!(now, head + 1, "case {case}: a create appends one event");
            outcomes[0] += 1;
        } else {
            assert_error_shape(&reply);
            assert_eq!(
                now, head,
                "case {case}: rejected ({reply}) but appended: {shown}"
            );
            outcomes[1] += 1;
        }
        head = now;
    }
    assert!(
        outcomes[1] >= 150,
        "too few rejections to mean much: {outcomes:?}"
    );

    // Executions of an agent task nobody serves settle after one dispatch.
    let workflow = s
        .create_workflow(json!({"name": "junk-exec", "tasks": [{"id": "w", "kind": "agent", "agent_role": "nobody", "input": "${input}"}]}))
        .await;
    let path = format!("/api/v1/workflows/{workflow}/execute");
    let mut head = s.head().await;
    let mut outcomes = [0usize; 2];
    for case in 0..200 {
        let body = if case % 4 == 0 {
            serde_json::to_vec(&json!({"input": random_value(&mut rng, 0)})).expect("json")
        } else {
            damage(
                &mut rng,
                br#"{"input": {"order_id": 17, "amount": 12.5, "tags": ["a", "b"]}}"#,
            )
        };
        let (status, reply) = s.post_raw(&path, body.clone()).await;
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        assert!(status < 500, "case {case}: {status} {reply} for {shown}");
        if status == 202 {
            let execution = reply["execution_id"]
                .as_str()
                .expect("execution_id")
                .to_owned();
            s.wait_events(&execution, "dispatch", |log| {
                log.count("TaskDispatched", Some("w")) == 1
                    || log.count("ExecutionFailed", None) == 1
            })
            .await;
            outcomes[0] += 1;
        } else {
            assert_error_shape(&reply);
            assert_eq!(
                s.head().await,
                head,
                "case {case}: rejected ({reply}) but appended: {shown}"
            );
            outcomes[1] += 1;
        }
        head = s.head().await;
    }
    assert!(outcomes[0] >= 20 && outcomes[1] >= 50, "{outcomes:?}");
}
