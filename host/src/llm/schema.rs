//! Structured answers checked against the JSON Schema the agent gave.

use super::CallError;

/// Check that `text` is a JSON document that is an instance of `schema`.
pub(super) fn check(schema: &serde_json::Value, text: &str) -> Result<(), CallError> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| CallError::InvalidOutput(format!("the request's JSON Schema is not valid: {e}")))?;
    let answer: serde_json::Value = serde_json::from_str(strip_fences(text))
        .map_err(|e| CallError::InvalidOutput(format!("the answer is not JSON ({e}): {}", excerpt(text))))?;
    let problems: Vec<String> = validator
        .iter_errors(&answer)
        .take(3)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() { e.to_string() } else { format!("at {at}: {e}") }
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CallError::InvalidOutput(format!(
            "the answer does not match its schema: {}",
            problems.join("; ")
        )))
    }
}

/// Whether `schema` is a JSON Schema the checker accepts.
pub(super) fn valid_schema(schema: &serde_json::Value) -> Result<(), String> {
    jsonschema::validator_for(schema).map(|_| ()).map_err(|e| e.to_string())
}

/// The JSON inside a Markdown code fence, as models without structured
/// output tend to answer; anything else as it is.
pub(super) fn strip_fences(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix("```") else { return trimmed };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// The start of `text`, for an error message.
fn excerpt(text: &str) -> String {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() { format!("{:?}…", &text[..end]) } else { format!("{text:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_against_their_schema() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["title", "priority"],
            "properties": {"title": {"type": "string"}, "priority": {"type": "integer", "minimum": 1}}
        });
        assert!(check(&schema, r#"{"title": "Login", "priority": 1}"#).is_ok());
        assert!(check(&schema, "```json\n{\"title\": \"Login\", \"priority\": 2}\n```").is_ok());
        let wrong = check(&schema, r#"{"title": "Login", "priority": 0}"#).unwrap_err().to_string();
        assert!(wrong.contains("/priority"), "{wrong}");
        let missing = check(&schema, r#"{"title": "Login"}"#).unwrap_err().to_string();
        assert!(missing.contains("priority"), "{missing}");
        let prose = check(&schema, "Sure! Here is the JSON you asked for").unwrap_err().to_string();
        assert!(prose.contains("not JSON") && prose.contains("Sure!"), "{prose}");
    }
}
