//! The fallback for every other catalog app (and for provider endpoints
//! without a reader): every JSON string value is user text. Form values,
//! text bodies and multipart text parts are read the same way for every
//! provider (see `body`).

use super::body::Out;
use super::json::Json;
use super::Role;

/// Every string value of the document (not member names; binary `data:`
/// URLs skipped).
pub(crate) fn json(doc: &Json<'_>, out: &mut Out<'_, '_>) {
    out.all_strings(Role::User, doc, "");
}
