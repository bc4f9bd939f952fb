//! The JSON body extractor of every route: a JSON object only. serde accepts a struct written as
//! an array of its fields in order (`["ns", "Name"]` for `{"id": "ns", "name": "Name"}`, and `[]`
//! for a struct whose fields all have defaults), which would let a body that is not the
//! documented object start a run or create a namespace.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON object body parsed into `T`. Size limit, content type and syntax are checked by actix's
/// `web::Json` (with the app's `JsonConfig`), so their errors are answered the same way.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            gofer_core::json::from_value(value).map(JsonBody).map_err(|e| ApiError::InvalidBody(e).into())
        })
    }
}
