use http::{Method, StatusCode};

use super::{Class, Classification, Classifier, analyze};
use crate::error::ErrorKind;

/// The classifier used unless you plug in another; see the [module docs](super).
///
/// Its two halves are public so your own classifier can fall back on them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl DefaultClassifier {
    /// 1xx/2xx/3xx succeed; 408, 429, 500, 502, 503, 504 are transient; everything else
    /// (other 4xx, 501, 505, ...) is permanent.
    pub fn classify_status(status: StatusCode) -> Class {
        match status.as_u16() {
            100..=399 => Class::Success,
            408 | 429 | 500 | 502 | 503 | 504 => Class::Transient,
            _ => Class::Permanent,
        }
    }

    /// Connect failures, timeouts, resets, HTTP/2 `REFUSED_STREAM`/`GOAWAY` and other
    /// transport trouble are transient; an invalid request, an invalid response, a failed TLS
    /// handshake (an invalid certificate, a server that does not speak TLS) and a redirect
    /// loop are permanent. The delivery comes from the error itself.
    pub fn classify_error(error: &reqwest::Error) -> Classification {
        let analysis = analyze(error);
        let class = match analysis.kind {
            ErrorKind::InvalidRequest
            | ErrorKind::InvalidResponse
            | ErrorKind::Decode
            | ErrorKind::BodyTooLarge => Class::Permanent,
            ErrorKind::Connect if analysis.tls_failed => Class::Permanent,
            ErrorKind::Transport if error.is_redirect() || error.is_decode() => Class::Permanent,
            _ => Class::Transient,
        };
        Classification {
            class,
            delivery: analysis.delivery,
        }
    }
}

impl Classifier for DefaultClassifier {
    fn classify(
        &self,
        _method: &Method,
        result: Result<&reqwest::Response, &reqwest::Error>,
    ) -> Classification {
        match result {
            Ok(response) => Classification::delivered(Self::classify_status(response.status())),
            Err(error) => Self::classify_error(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cases = [
            (200, Class::Success),
            (204, Class::Success),
            (301, Class::Success),
            (304, Class::Success),
            (400, Class::Permanent),
            (401, Class::Permanent),
            (403, Class::Permanent),
            (404, Class::Permanent),
            (408, Class::Transient),
            (409, Class::Permanent),
            (429, Class::Transient),
            (500, Class::Transient),
            (501, Class::Permanent),
            (502, Class::Transient),
            (503, Class::Transient),
            (504, Class::Transient),
            (505, Class::Permanent),
            (599, Class::Permanent),
        ];
        for (code, class) in cases {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(DefaultClassifier::classify_status(status), class, "{code}");
        }
    }
}
