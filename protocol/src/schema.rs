//! JSON Schemas of both directions, generated from the types above. The
//! checked-in copies in `protocol/schema/` are kept current by a test.

use crate::{ClientFrame, ServerFrame};

pub fn client_schema() -> String {
    let schema = schemars::schema_for!(ClientFrame);
    serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n"
}

pub fn server_schema() -> String {
    let schema = schemars::schema_for!(ServerFrame);
    serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n"
}

/// The server API's bodies (`protocol::api`), as the definitions of one
/// schema.
pub fn api_schema() -> String {
    let schema = schemars::schema_for!(crate::api::ApiBodies);
    serde_json::to_string_pretty(&schema).expect("schema serialises") + "\n"
}
