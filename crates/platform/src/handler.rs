//! For handlers that answer before they finish: the client gets its
//! response (body finished, connection free) while the handler goes on with
//! work the answer does not wait for, such as an ingest's fold.

use spin_sdk::http::conversions::{IntoResponse, TryFromIncomingRequest};
use spin_sdk::http::{IncomingRequest, OutgoingResponse, Request, Response, ResponseOutparam};

/// The whole request, or the response that says why it could not be read.
pub async fn receive(incoming: IncomingRequest) -> Result<Request, Response> {
    Request::try_from_incoming_request(incoming).await.map_err(IntoResponse::into_response)
}

/// Sends `response` and finishes its body.
pub async fn send(out: ResponseOutparam, mut response: Response) {
    let body = std::mem::take(response.body_mut());
    match OutgoingResponse::try_from(response) {
        // The body's sink is dropped when this returns, which finishes it.
        Ok(response) => {
            if let Err(e) = out.set_with_body(response, body).await {
                eprintln!("response not sent: {e}");
            }
        }
        Err(e) => eprintln!("response not converted: {e}"),
    }
}
