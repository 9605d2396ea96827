//! Which namespaces the operator works in: one (`watchNamespace`) or every namespace.

use kube::api::Api;
use kube::{Client, Resource};

/// An API over `namespace`, or over every namespace when it is `None`.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
