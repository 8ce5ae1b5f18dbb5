//! The API described as OpenAPI 3.0 (`GET /openapi.json`, no token needed), built from
//! the collections the model knows.

use serde_json::{Value, json};
use strata_model::KINDS;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn resource_response(description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"ETag": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Resource"}}}
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    let if_match = json!({
        "name": "If-Match", "in": "header", "required": false,
        "description": "The etag last read: the request fails with 412 if the resource changed since.",
        "schema": {"type": "string"}
    });
    for kind in KINDS {
        let collection = kind.name;
        let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}});
        let item_path = match kind.singleton {
            Some(id) => format!("/networking/v1/{collection}/{id}"),
            None => format!("/networking/v1/{collection}/{{id}}"),
        };
        let params = if kind.singleton.is_some() {
            json!([])
        } else {
            json!([id_param])
        };
        let mut put_params = params.as_array().cloned().unwrap_or_default();
        put_params.push(if_match.clone());
        paths.insert(
            format!("/networking/v1/{collection}"),
            json!({"get": {
                "summary": format!("Every resource of {collection}"),
                "operationId": format!("list_{collection}"),
                "responses": {
                    "200": {"description": "The collection", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/List"}}}},
                    "401": error_response("No valid token"),
                }
            }}),
        );
        paths.insert(
            item_path,
            json!({
                "get": {
                    "summary": format!("One resource of {collection}"),
                    "operationId": format!("get_{collection}"),
                    "parameters": params,
                    "responses": {
                        "200": resource_response("The resource, with its read-only back-references"),
                        "401": error_response("No valid token"),
                        "404": error_response("No such resource"),
                    }
                },
                "put": {
                    "summary": format!("Create or replace a resource of {collection}"),
                    "operationId": format!("put_{collection}"),
                    "parameters": put_params,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Resource"}}}},
                    "responses": {
                        "200": resource_response("Replaced"),
                        "201": resource_response("Created"),
                        "400": error_response("A field is wrong: `target` is its JSON pointer"),
                        "401": error_response("No valid token"),
                        "404": error_response("Not a name this collection takes"),
                        "409": error_response("Other resources refer to what the update removes, or no address is left to allocate"),
                        "412": error_response("The If-Match etag is stale"),
                    }
                },
                "delete": {
                    "summary": format!("Delete a resource of {collection}"),
                    "operationId": format!("delete_{collection}"),
                    "parameters": json!([if_match.clone()]).as_array().cloned().map(|mut v| {
                        if kind.singleton.is_none() {
                            v.insert(0, json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}));
                        }
                        v
                    }),
                    "responses": {
                        "200": {"description": "Deleted"},
                        "401": error_response("No valid token"),
                        "404": error_response("No such resource"),
                        "409": error_response("Other resources refer to it: `referrers` lists them"),
                        "412": error_response("The If-Match etag is stale"),
                    }
                }
            }),
        );
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Strata network controller",
            "description": "The northbound API of the Windows Server 2016 Network Controller, as Strata serves it.",
            "version": "v1"
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Resource": {
                    "type": "object",
                    "properties": {
                        "resourceId": {"type": "string"},
                        "resourceRef": {"type": "string"},
                        "instanceId": {"type": "string"},
                        "etag": {"type": "string"},
                        "resourceMetadata": {"type": "object"},
                        "tags": {"type": "object"},
                        "properties": {"type": "object"}
                    }
                },
                "List": {
                    "type": "object",
                    "required": ["value"],
                    "properties": {
                        "value": {"type": "array", "items": {"$ref": "#/components/schemas/Resource"}},
                        "nextLink": {"type": "string"}
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "target": {"type": "string"},
                            "referrers": {"type": "array", "items": {"type": "string"}}
                        }
                    }}
                }
            }
        }
    })
}
