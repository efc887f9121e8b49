//! The access matrix: every route of the served OpenAPI document × every role × its own
//! tenant's resources and another tenant's, each with the status it must get.

use conflux_http::auth::{Rule, ROUTES};
use conflux_schema::access::Role;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::TestServer;
use crate::tenants::{concrete, estate, key_in, send, system_admin, Caller, Estate};

/// The access matrix: every protected operation of the OpenAPI document, for every
/// role, on its own tenant's resources and on another tenant's. A role without the
/// route's permission gets 403 on both; with it, its own tenant's resource is served
/// (never 401/403/404) and another tenant's is 404.
pub async fn every_role_gets_its_status_on_every_route(server: &TestServer) {
    let own = estate(server, "acme").await;
    let other = estate(server, "globex").await;
    let (status, document) = system_admin(server)
        .call("GET", "/api/v1/openapi.json", None)
        .await;
    assert_eq!(status, 200);
    let normal = |path: &str| {
        let mut out = String::new();
        let mut inside = false;
        for c in path.chars() {
            match c {
                '{' => {
                    inside = true;
                    out.push_str("{}");
                }
                '}' => inside = false,
                c if !inside => out.push(c),
                _ => {}
            }
        }
        out
    };
    let mut checked = 0;
    for role in Role::ALL {
        let caller = key_in(server, "acme", role).await;
        let paths = document["paths"].as_object().expect("paths");
        for (template, operations) in paths {
            for (method, operation) in operations.as_object().expect("operations") {
                let method = method.to_uppercase();
                let secured = operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty());
                if !secured {
                    continue;
                }
                let Some(Rule::Needs(permission)) = ROUTES
                    .iter()
                    .find(|(m, r, _)| *m == method && normal(r) == normal(template))
                    .map(|(_, _, rule)| *rule)
                else {
                    panic!("{method} {template} is in the document but not in ROUTES");
                };
                let allowed = role.allows(permission);
                // A pattern's name is no tenant's resource: like a creation, it has no
                // other tenant's version to be refused.
                let has_id = template.contains('{') && !template.starts_with("/api/v1/patterns/");
                for (mine, estate) in [(true, &own), (false, &other)] {
                    if !mine && !has_id {
                        continue; // lists and creations: covered by two_tenants_never_cross
                    }
                    let status = request(&caller, &method, template, estate, checked).await;
                    checked += 1;
                    let what = format!(
                        "{} on {method} {template} ({} tenant)",
                        role.as_str(),
                        if mine { "its own" } else { "another" }
                    );
                    if !allowed {
                        assert_eq!(status, 403, "{what}");
                    } else if mine {
                        assert!(
                            ![401, 403, 404].contains(&status) && status < 500,
                            "{what}: {status}"
                        );
                    } else {
                        assert_eq!(status, 404, "{what}");
                    }
                }
            }
        }
    }
    assert!(checked > 100, "the matrix covered {checked} combinations");
}

/// One request of the matrix; returns its status (a WebSocket's: 101 when upgraded
/// and its first frame is a snapshot, 404 when closed with 4404, else the refusal's).
async fn request(
    caller: &Caller<'_>,
    method: &str,
    template: &str,
    estate: &Estate,
    n: usize,
) -> u16 {
    let path = concrete(template, estate);
    if template.starts_with("/ws/") {
        return match caller.watch(&path).await {
            Ok(Message::Text(text)) if text.contains("\"snapshot\"") => 101,
            Ok(Message::Close(Some(close))) if u16::from(close.code) == 4404 => 404,
            Ok(other) => panic!("{path}: {other:?}"),
            Err(status) => status,
        };
    }
    send(caller, method, template, &path, estate, n).await.0
}
