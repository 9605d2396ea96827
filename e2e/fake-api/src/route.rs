//! Where a request goes: the collection, namespace, name and subresource a Kubernetes API path
//! names, for the core group (`/api/v1/...`) and named groups (`/apis/{group}/{version}/...`).

/// A collection of objects of one kind, as the URL names it: `apps/v1` + `deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ResourceType {
    /// `v1` for the core group, `{group}/{version}` otherwise, as in an object's `apiVersion`.
    pub(crate) api_version: String,
    pub(crate) plural: String,
}

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiPath {
    pub(crate) resource: ResourceType,
    /// `None` when the path names no namespace: a list or watch across all namespaces, or a
    /// cluster-scoped object (stored under the namespace `""`).
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("the server could not find the requested resource: {0} is not a resource path")]
    NotAResourcePath(String),
}

/// Subresources of a Namespace object, which would otherwise read as a namespaced collection
/// (`/api/v1/namespaces/{name}/status` against `/api/v1/namespaces/{ns}/{plural}`).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl ApiPath {
    pub(crate) fn parse(path: &str) -> Result<Self, RouteError> {
        let not_a_resource = || RouteError::NotAResourcePath(path.to_owned());
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if segments.iter().any(|segment| segment.is_empty()) {
            return Err(not_a_resource());
        }
        let (api_version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ((*version).to_owned(), rest),
            ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
            _ => return Err(not_a_resource()),
        };
        let is_core = api_version == "v1";
        let (namespace, plural, name, subresource) = match rest {
            ["namespaces", namespace, plural, tail @ ..]
                if tail.len() <= 2
                    && !(is_core && tail.is_empty() && NAMESPACE_SUBRESOURCES.contains(plural)) =>
            {
                (Some(*namespace), *plural, tail.first(), tail.get(1))
            }
            [plural] => (None, *plural, None, None),
            [plural, name] => (Some(""), *plural, Some(name), None),
            [plural, name, subresource] => (Some(""), *plural, Some(name), Some(subresource)),
            _ => return Err(not_a_resource()),
        };
        Ok(Self {
            resource: ResourceType {
                api_version,
                plural: plural.to_owned(),
            },
            namespace: namespace.map(str::to_owned),
            name: name.map(|name| (*name).to_owned()),
            subresource: subresource.map(|subresource| (*subresource).to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        path: &str,
    ) -> (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    ) {
        let parsed = ApiPath::parse(path).expect(path);
        (
            parsed.resource.api_version,
            parsed.resource.plural,
            parsed.namespace,
            parsed.name,
            parsed.subresource,
        )
    }

    fn some(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    #[test]
    fn reads_core_and_group_paths() {
        assert_eq!(
            parse("/api/v1/namespaces/ns/pods/p/status"),
            (
                "v1".into(),
                "pods".into(),
                some("ns"),
                some("p"),
                some("status")
            )
        );
        assert_eq!(
            parse("/apis/apps/v1/namespaces/ns/deployments"),
            (
                "apps/v1".into(),
                "deployments".into(),
                some("ns"),
                None,
                None
            )
        );
        assert_eq!(
            parse("/api/v1/pods"),
            ("v1".into(), "pods".into(), None, None, None)
        );
        assert_eq!(
            parse("/apis/rbac.authorization.k8s.io/v1/clusterroles/admin"),
            (
                "rbac.authorization.k8s.io/v1".into(),
                "clusterroles".into(),
                some(""),
                some("admin"),
                None
            )
        );
    }

    #[test]
    fn tells_namespace_objects_from_namespaced_collections() {
        assert_eq!(
            parse("/api/v1/namespaces/ns"),
            ("v1".into(), "namespaces".into(), some(""), some("ns"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/ns/status"),
            (
                "v1".into(),
                "namespaces".into(),
                some(""),
                some("ns"),
                some("status")
            )
        );
        assert_eq!(
            parse("/api/v1/namespaces/ns/secrets"),
            ("v1".into(), "secrets".into(), some("ns"), None, None)
        );
    }

    #[test]
    fn refuses_paths_outside_the_resource_api() {
        for path in [
            "/healthz",
            "/api",
            "/apis/apps",
            "/api/v1/namespaces/ns/pods/p/status/x",
            "/api/v1//pods",
        ] {
            assert!(ApiPath::parse(path).is_err(), "{path}");
        }
    }
}
