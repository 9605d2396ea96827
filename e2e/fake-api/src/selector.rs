//! Label and field selectors of list and watch requests, read and matched as the API server
//! does for the forms controllers send.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SelectorError {
    #[error("unable to parse requirement {0:?} of the label selector")]
    BadLabelRequirement(String),
    #[error("unable to parse requirement {0:?} of the field selector")]
    BadFieldRequirement(String),
    #[error(
        "field label not supported: {0} (this fake answers metadata.name and metadata.namespace)"
    )]
    UnsupportedField(String),
}

/// The `labelSelector` and `fieldSelector` of one request; both empty match everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selector {
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    /// Also matches objects without the label, as in Kubernetes.
    NotEquals(String, String),
    In(String, Vec<String>),
    /// Also matches objects without the label, as in Kubernetes.
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    pointer: &'static str,
    value: String,
    equal: bool,
}

impl Selector {
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, SelectorError> {
        Ok(Self {
            labels: split_outside_parentheses(labels.unwrap_or(""))
                .map(parse_label_requirement)
                .collect::<Result<_, _>>()?,
            fields: fields
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|term| !term.is_empty())
                .map(parse_field_requirement)
                .collect::<Result<_, _>>()?,
        })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        let label = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str)
        };
        let labels_match = self.labels.iter().all(|requirement| match requirement {
            LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
            LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
            LabelRequirement::In(key, values) => {
                label(key).is_some_and(|found| values.iter().any(|value| value == found))
            }
            LabelRequirement::NotIn(key, values) => {
                label(key).is_none_or(|found| values.iter().all(|value| value != found))
            }
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::DoesNotExist(key) => label(key).is_none(),
        });
        labels_match
            && self.fields.iter().all(|requirement| {
                let found = object
                    .pointer(requirement.pointer)
                    .and_then(Value::as_str)
                    .unwrap_or("");
                (found == requirement.value) == requirement.equal
            })
    }
}

/// Splits `a=b,c in (d,e)` into `a=b` and `c in (d,e)`: commas inside a value set do not
/// separate requirements.
fn split_outside_parentheses(selector: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    let mut start = 0;
    let mut terms = Vec::new();
    for (at, character) in selector.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&selector[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|term| !term.is_empty())
}

fn parse_label_requirement(term: &str) -> Result<LabelRequirement, SelectorError> {
    let bad = || SelectorError::BadLabelRequirement(term.to_owned());
    let key = |key: &str| {
        let key = key.trim();
        let valid = !key.is_empty()
            && !key.contains(|character: char| {
                character.is_whitespace() || "()!=,".contains(character)
            });
        valid.then(|| key.to_owned()).ok_or_else(bad)
    };
    let value_set = |set: &str| {
        let set = set.trim();
        let inner = set
            .strip_prefix('(')
            .and_then(|set| set.strip_suffix(')'))
            .ok_or_else(bad)?;
        Ok(inner
            .split(',')
            .map(|value| value.trim().to_owned())
            .collect::<Vec<_>>())
    };
    if let Some(negated) = term.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(key(negated)?));
    }
    if let Some((name, set)) = term.split_once(" notin ") {
        return Ok(LabelRequirement::NotIn(key(name)?, value_set(set)?));
    }
    if let Some((name, set)) = term.split_once(" in ") {
        return Ok(LabelRequirement::In(key(name)?, value_set(set)?));
    }
    if let Some((name, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(
            key(name)?,
            value.trim().to_owned(),
        ));
    }
    if let Some((name, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::Equals(
            key(name)?,
            value.trim().to_owned(),
        ));
    }
    Ok(LabelRequirement::Exists(key(term)?))
}

fn parse_field_requirement(term: &str) -> Result<FieldRequirement, SelectorError> {
    let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
        (field, value, false)
    } else if let Some((field, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        (field, value, true)
    } else {
        return Err(SelectorError::BadFieldRequirement(term.to_owned()));
    };
    let pointer = match field.trim() {
        "metadata.name" => "/metadata/name",
        "metadata.namespace" => "/metadata/namespace",
        other => return Err(SelectorError::UnsupportedField(other.to_owned())),
    };
    Ok(FieldRequirement {
        pointer,
        value: value.trim().to_owned(),
        equal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    fn matches(labels: &str, object: &Value) -> bool {
        Selector::parse(Some(labels), None)
            .expect(labels)
            .matches(object)
    }

    #[test]
    fn equality_and_existence() {
        let web = object(json!({"app": "web", "tier": "front"}));
        let db = object(json!({"app": "db"}));
        assert!(matches("app=web", &web) && !matches("app=web", &db));
        assert!(matches("app==web", &web));
        assert!(matches("app!=web", &db) && !matches("app!=web", &web));
        assert!(
            matches("app!=web", &object(json!({}))),
            "!= matches a missing label"
        );
        assert!(matches("tier", &web) && !matches("tier", &db));
        assert!(matches("!tier", &db) && !matches("!tier", &web));
        assert!(matches("app=web,tier=front", &web) && !matches("app=web,tier=back", &web));
        assert!(matches("", &db), "an empty selector matches everything");
    }

    #[test]
    fn set_based_requirements() {
        let web = object(json!({"app": "web"}));
        assert!(matches("app in (web, db)", &web));
        assert!(!matches("app in (db,cache)", &web));
        assert!(matches("app notin (db,cache),app", &web));
        assert!(
            matches("tier notin (front)", &web),
            "notin matches a missing label"
        );
    }

    #[test]
    fn field_selectors_on_name_and_namespace() {
        let selector = Selector::parse(None, Some("metadata.name=a,metadata.namespace!=other"));
        assert!(selector.expect("parses").matches(&object(json!({}))));
        let selector = Selector::parse(None, Some("metadata.name=b")).expect("parses");
        assert!(!selector.matches(&object(json!({}))));
        assert_eq!(
            Selector::parse(None, Some("status.phase=Running")).map(|_| ()),
            Err(SelectorError::UnsupportedField("status.phase".into()))
        );
    }

    #[test]
    fn refuses_malformed_label_requirements() {
        for selector in ["app in web", "=web", "a b"] {
            assert!(Selector::parse(Some(selector), None).is_err(), "{selector}");
        }
    }
}
