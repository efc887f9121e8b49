//! The paths of the live streams, `/ws/executions/{id}` and `/ws/workflows/{id}`, read
//! into what they name. A stream token is minted for one such path in its canonical
//! form ([`LivePath::scope`]: the id as a lower-case hyphenated UUID) and accepted
//! only on an upgrade request whose path reads as the same stream.

use conflux_schema::StreamId;
use uuid::Uuid;

/// A live stream, as its path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivePath {
    /// `/ws/executions/{id}`.
    Execution(Uuid),
    /// `/ws/workflows/{id}`.
    Workflow(Uuid),
}

impl LivePath {
    /// The stream `path` names (a request path, no query string), if it is one.
    pub fn parse(path: &str) -> Option<Self> {
        let (kind, id) = path.strip_prefix("/ws/")?.split_once('/')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "executions" => Some(Self::Execution(id)),
            "workflows" => Some(Self::Workflow(id)),
            _ => None,
        }
    }

    /// The canonical path: what a stream token is good for.
    pub fn scope(&self) -> String {
        match self {
            Self::Execution(id) => format!("/ws/executions/{id}"),
            Self::Workflow(id) => format!("/ws/workflows/{id}"),
        }
    }

    /// The event stream whose first event says whose it is.
    pub fn stream(&self) -> StreamId {
        match self {
            Self::Execution(id) => StreamId::execution(*id),
            Self::Workflow(id) => StreamId::workflow(*id),
        }
    }

    /// The id in the path.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Execution(id) | Self::Workflow(id) => *id,
        }
    }

    /// `execution` or `workflow`.
    pub fn what(&self) -> &'static str {
        match self {
            Self::Execution(_) => "execution",
            Self::Workflow(_) => "workflow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LivePath;

    #[test]
    fn live_paths_read_into_one_canonical_scope() {
        let id = "0190F5C4-7A2B-7CC3-9D1E-5B8A9C0D1E2F";
        let canonical = "/ws/executions/0190f5c4-7a2b-7cc3-9d1e-5b8a9c0d1e2f";
        for spelling in [
            canonical.to_owned(),
            format!("/ws/executions/{id}"),
            format!("/ws/executions/{}", id.replace('-', "")),
        ] {
            let path = LivePath::parse(&spelling).expect(&spelling);
            assert_eq!(path.scope(), canonical, "{spelling}");
        }
        let workflow = LivePath::parse(&canonical.replace("executions", "workflows"));
        assert_eq!(workflow.map(|p| p.what()), Some("workflow"));
        for bad in [
            "",
            "/ws/executions/",
            "/ws/executions/nope",
            &format!("{canonical}/"),
            &format!("{canonical}?after=1"),
            &canonical.replace("/ws/", "/api/v1/"),
            &canonical.replace("executions", "agents"),
            &format!("/x{canonical}"),
        ] {
            assert_eq!(LivePath::parse(bad), None, "{bad}");
        }
    }
}
