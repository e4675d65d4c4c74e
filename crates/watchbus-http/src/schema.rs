//! JSON Schemas for event data, one per event type: see [`Schemas`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;
use watchbus::{Draft, EventType};

use crate::error::ApiError;

/// The JSON Schema of each event type that has one.
///
/// A publish whose event has a type with a registered schema is stored only
/// when its data is valid against that schema; otherwise it is refused
/// `422 schema_mismatch` and nothing of it is stored (an array is refused
/// whole, naming the event at fault). Events without a type, and types
/// without a schema, are not checked. With no schema registered, a publish
/// pays one branch.
///
/// Schemas are compiled once, when registered: any draft from 4 to 2020-12,
/// chosen by the schema's `$schema` (2020-12 when it has none). A `$ref`
/// must point inside the schema itself: nothing is fetched, from the network
/// or from files. `format` is checked where the schema's draft makes it an
/// assertion (drafts 4 to 7), not where it is an annotation (2019-09 and
/// 2020-12). `pattern` runs on a backtracking engine whose backtracking is
/// bounded, so no client data can make a check run for long. A refusal
/// says where the data fails and why, without echoing the data's values.
/// Data a check cannot read whole (nested deeper than 127 levels, or with a
/// number beyond the range of an `f64`) is refused too: the schema cannot
/// vouch for it.
///
/// ```
/// use watchbus::EventType;
/// use watchbus_http::Schemas;
///
/// let mut schemas = Schemas::new();
/// let order = serde_json::json!({
///     "type": "object",
///     "properties": {"amount": {"type": "number"}},
///     "required": ["amount"],
/// });
/// schemas.insert(EventType::new("order.created")?, &order)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct Schemas {
    by_type: HashMap<EventType, Arc<jsonschema::Validator>>,
}

impl fmt::Debug for Schemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<&str> = self.by_type.keys().map(EventType::as_str).collect();
        types.sort_unstable();
        f.debug_struct("Schemas").field("types", &types).finish()
    }
}

/// Why a schema could not be registered.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The type already has a schema: which one applies would be a guess.
    #[error("event type {0:?} has two schemas")]
    Duplicate(String),
    /// The schema is not a JSON Schema this server can use: malformed, or
    /// with a `$ref` it would have to fetch.
    #[error("the schema of event type {event_type:?} is not a usable JSON Schema: {reason}")]
    Invalid {
        /// The type it was registered for.
        event_type: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The most violations a refusal counts; past it, it says "or more".
const MAX_COUNTED: usize = 100;

impl Schemas {
    /// No schemas: every publish is stored, whatever its data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the data of every event of type `event_type` against
    /// `schema` from now on.
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] when `schema` is not a JSON Schema (or
    /// refers outside itself), [`SchemaError::Duplicate`] when the type
    /// already has one. Either way nothing is registered.
    pub fn insert(&mut self, event_type: EventType, schema: &Value) -> Result<(), SchemaError> {
        if self.by_type.contains_key(&event_type) {
            return Err(SchemaError::Duplicate(event_type.as_str().to_owned()));
        }
        let validator = jsonschema::validator_for(schema).map_err(|error| {
            let at = error.instance_path().to_string();
            SchemaError::Invalid {
                event_type: event_type.as_str().to_owned(),
                reason: if at.is_empty() {
                    error.to_string()
                } else {
                    format!("at {at}: {error}")
                },
            }
        })?;
        self.by_type.insert(event_type, Arc::new(validator));
        Ok(())
    }

    /// True when no type has a schema.
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Refuses `draft` when its type has a schema that its data fails.
    pub(crate) fn check(&self, draft: &Draft) -> Result<(), ApiError> {
        if self.by_type.is_empty() {
            return Ok(());
        }
        let Some(event_type) = &draft.event_type else {
            return Ok(());
        };
        let Some(validator) = self.by_type.get(event_type) else {
            return Ok(());
        };
        // The data is valid JSON, but a tree cannot hold all of it: nesting
        // deeper than 127 levels, or a number beyond `f64`. A schema cannot
        // vouch for what it cannot see, so it is refused as unchecked.
        let data: Value = match serde_json::from_str(draft.data.as_json()) {
            Ok(data) => data,
            Err(error) => {
                // Its position is in the compacted data, not in what the
                // client sent: left out.
                let error = error.to_string();
                let why = error
                    .rsplit_once(" at line ")
                    .map_or(&*error, |(why, _)| why);
                return Err(ApiError::SchemaMismatch {
                    event_type: event_type.as_str().to_owned(),
                    violation: format!("the data cannot be checked: {why}"),
                });
            }
        };
        let mut errors = validator.iter_errors(&data);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        // The client's own values are masked: a message must not echo a
        // megabyte of data back.
        let at = first.instance_path().to_string();
        let mut violation = if at.is_empty() {
            first.masked_with("the data").to_string()
        } else {
            format!("at {at}: {}", first.masked())
        };
        let more = errors.take(MAX_COUNTED).count();
        match more {
            0 => {}
            MAX_COUNTED => {
                violation.push_str(&format!(" (and {MAX_COUNTED} or more other errors)"))
            }
            1 => violation.push_str(" (and 1 other error)"),
            n => violation.push_str(&format!(" (and {n} other errors)")),
        }
        Err(ApiError::SchemaMismatch {
            event_type: event_type.as_str().to_owned(),
            violation,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;
    use watchbus::{Data, Key};

    use super::*;

    /// Registers `schema` for `event_type`, which must take it.
    fn register(schemas: &mut Schemas, event_type: &str, schema: &Value) {
        schemas
            .insert(EventType::new(event_type).unwrap(), schema)
            .unwrap();
    }

    fn schemas() -> Schemas {
        let mut schemas = Schemas::new();
        let order = json!({
            "type": "object",
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            },
            "required": ["amount"],
        });
        register(&mut schemas, "order.created", &order);
        register(
            &mut schemas,
            "note",
            &json!({"type": "string", "maxLength": 5}),
        );
        schemas
    }

    fn draft(event_type: Option<&str>, data: Data) -> Draft {
        Draft {
            event_type: event_type.map(|t| EventType::new(t).unwrap()),
            ..Draft::to_key(Key::new("k").unwrap(), data)
        }
    }

    fn json_draft(event_type: Option<&str>, data: &str) -> Draft {
        draft(event_type, Data::from_json(data).unwrap())
    }

    /// The refusal's status, code and message.
    fn refusal(schemas: &Schemas, draft: &Draft) -> (u16, &'static str, String) {
        let error = schemas.check(draft).unwrap_err();
        let (status, code) = error.status_and_code();
        (status.as_u16(), code, error.to_string())
    }

    #[test]
    fn valid_data_of_a_typed_event_passes() {
        let schemas = schemas();
        let ok = json_draft(Some("order.created"), r#"{"amount": 3, "currency": "EUR"}"#);
        assert!(schemas.check(&ok).is_ok());
        assert!(
            schemas
                .check(&draft(Some("note"), Data::text("hi")))
                .is_ok()
        );
    }

    #[test]
    fn untyped_events_and_types_without_a_schema_are_not_checked() {
        let schemas = schemas();
        assert!(schemas.check(&json_draft(None, "[1]")).is_ok());
        assert!(schemas.check(&json_draft(Some("other"), "[1]")).is_ok());
        assert!(
            Schemas::new()
                .check(&json_draft(Some("order.created"), "1"))
                .is_ok()
        );
    }

    #[test]
    fn failing_data_is_422_naming_the_place_without_echoing_it() {
        let schemas = schemas();
        let bad = json_draft(Some("order.created"), r#"{"amount": "secret-ish"}"#);
        assert_eq!(
            refusal(&schemas, &bad),
            (
                422,
                "schema_mismatch",
                "the data does not match the JSON Schema of event type \"order.created\": \
                 at /amount: value is not of type \"number\""
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_violation_at_the_top_says_the_data() {
        let schemas = schemas();
        let bad = draft(Some("note"), Data::text("too long"));
        assert_eq!(
            refusal(&schemas, &bad).2,
            "the data does not match the JSON Schema of event type \"note\": \
             the data is longer than 5 characters"
        );
        let null = json_draft(Some("order.created"), "null");
        assert_eq!(
            refusal(&schemas, &null).2,
            "the data does not match the JSON Schema of event type \"order.created\": \
             the data is not of type \"object\""
        );
    }

    #[test]
    fn further_violations_are_counted() {
        let schemas = schemas();
        let two = json_draft(
            Some("order.created"),
            r#"{"amount": -1, "currency": "eur"}"#,
        );
        let message = refusal(&schemas, &two).2;
        assert!(message.ends_with(" (and 1 other error)"), "{message}");
        let three = json_draft(Some("order.created"), r#"{"currency": 1}"#);
        let message = refusal(&schemas, &three).2;
        assert!(message.ends_with(" (and 1 other error)"), "{message}");

        let mut many = Schemas::new();
        let numbers = json!({"type": "array", "items": {"type": "number"}});
        register(&mut many, "numbers", &numbers);
        let strings = format!("[{}]", vec!["\"x\""; 150].join(","));
        let message = refusal(&many, &json_draft(Some("numbers"), &strings)).2;
        assert!(
            message
                .ends_with("at /0: value is not of type \"number\" (and 100 or more other errors)"),
            "{message}"
        );
        let three = refusal(&many, &json_draft(Some("numbers"), r#"["a", "b", "c"]"#)).2;
        assert!(three.ends_with(" (and 2 other errors)"), "{three}");
    }

    #[test]
    fn a_type_has_one_schema() {
        let mut schemas = schemas();
        let error = schemas
            .insert(EventType::new("note").unwrap(), &json!(true))
            .unwrap_err();
        assert_eq!(error.to_string(), "event type \"note\" has two schemas");
        // The first one still applies.
        assert!(
            schemas
                .check(&draft(Some("note"), Data::text("too long")))
                .is_err()
        );
    }

    #[test]
    fn a_malformed_schema_or_a_reference_to_fetch_is_refused() {
        let mut schemas = Schemas::new();
        for bad in [
            json!({"type": 5}),
            json!({"minimum": "zero"}),
            json!({"$ref": "https://example.com/order.json"}),
            json!({"$ref": "order.json"}),
        ] {
            let error = schemas
                .insert(EventType::new("t").unwrap(), &bad)
                .unwrap_err();
            assert!(
                matches!(&error, SchemaError::Invalid { event_type, .. } if event_type == "t"),
                "{bad}: {error}"
            );
        }
        assert!(schemas.is_empty());
        let error = schemas
            .insert(
                EventType::new("t").unwrap(),
                &json!({"properties": {"n": {"type": 5}}}),
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the schema of event type \"t\" is not a usable JSON Schema: at /properties/n/type: "),
            "{error}"
        );
        // A reference inside the schema is fine.
        let local = json!({
            "$defs": {"amount": {"type": "number"}},
            "properties": {"amount": {"$ref": "#/$defs/amount"}},
        });
        register(&mut schemas, "t", &local);
        let bad = json_draft(Some("t"), r#"{"amount": "x"}"#);
        assert_eq!(
            refusal(&schemas, &bad).2,
            "the data does not match the JSON Schema of event type \"t\": \
             at /amount: value is not of type \"number\""
        );
    }

    #[test]
    fn older_drafts_are_read_by_their_schema_keyword() {
        let mut schemas = Schemas::new();
        // Draft 4's boolean exclusiveMaximum: 2020-12 would refuse it.
        let draft4 = json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "number",
            "maximum": 10,
            "exclusiveMaximum": true,
        });
        register(&mut schemas, "n", &draft4);
        assert!(schemas.check(&json_draft(Some("n"), "9")).is_ok());
        assert!(schemas.check(&json_draft(Some("n"), "10")).is_err());
    }

    #[test]
    fn the_deepest_data_checks_on_a_worker_sized_stack_and_deeper_is_refused() {
        let mut schemas = Schemas::new();
        let recursive = json!({"items": {"$ref": "#"}, "maximum": 5});
        register(&mut schemas, "tree", &recursive);
        let nested = |depth: usize, leaf: &str| {
            let text = format!("{}{leaf}{}", "[".repeat(depth), "]".repeat(depth));
            json_draft(Some("tree"), &text)
        };
        // A tree holds 127 levels; a recursive schema follows them all.
        let (valid, invalid, deeper) = (nested(127, "1"), nested(127, "9"), nested(128, "1"));
        // A tokio worker's stack is 2 MiB.
        let checked = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                [valid, invalid, deeper]
                    .map(|draft| schemas.check(&draft).err().map(|e| e.to_string()))
            })
            .unwrap()
            .join()
            .unwrap();
        let at = "/0".repeat(127);
        let prefix = "the data does not match the JSON Schema of event type \"tree\"";
        assert_eq!(
            checked,
            [
                None,
                Some(format!(
                    "{prefix}: at {at}: value is greater than the maximum of 5"
                )),
                Some(format!(
                    "{prefix}: the data cannot be checked: recursion limit exceeded"
                )),
            ]
        );
    }

    #[test]
    fn a_number_beyond_f64_cannot_be_checked() {
        let schemas = schemas();
        let huge = json_draft(Some("order.created"), r#"{"amount": 1e999}"#);
        assert_eq!(
            refusal(&schemas, &huge),
            (
                422,
                "schema_mismatch",
                "the data does not match the JSON Schema of event type \"order.created\": \
                 the data cannot be checked: number out of range"
                    .to_owned()
            )
        );
        // Without a schema it is stored as sent.
        assert!(schemas.check(&json_draft(Some("other"), "1e999")).is_ok());
    }

    #[test]
    fn debug_lists_the_types() {
        assert_eq!(
            format!("{:?}", schemas()),
            "Schemas { types: [\"note\", \"order.created\"] }"
        );
    }
}
