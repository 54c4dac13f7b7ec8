//! Run inputs: the files given with `--input name=file`, read as the
//! MessagePack values a run commits as `input.<name>`.

use std::path::Path;

/// Read an input file (YAML or JSON) as the MessagePack value
/// [`RunOptions::inputs`](crate::exec::RunOptions::inputs) takes.
/// Errors are one line, naming the file (and the line of a syntax error).
pub fn load_input(path: &Path) -> Result<Vec<u8>, String> {
    let text = crate::files::read_text(path, MAX_INPUT_BYTES)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!("{}: the file is empty: write a YAML or JSON value", path.display()));
    }
    let value: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("{} (not YAML or JSON)", crate::workflow::yaml_error_line(path, &e)))?;
    rmp_serde::to_vec_named(&value).map_err(|e| format!("{}: {e}", path.display()))
}

/// The largest input file read.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;
