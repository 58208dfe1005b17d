//! Azure Blob error bodies: `<Error><Code/><Message/></Error>` plus `x-ms-error-code`.

/// The Azure error codes hoard answers with, and their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureCode {
    AuthenticationFailed,
    BlobNotFound,
    InvalidBlockId,
    InvalidBlockList,
    InvalidHeaderValue,
    InvalidQueryParameterValue,
    InvalidRange,
    InvalidXmlDocument,
    MissingRequiredHeader,
    RequestBodyTooLarge,
    BlobImmutable,
    BlockListTooLong,
    InvalidInput,
    InternalError,
    ServerBusy,
    UnsupportedHttpVerb,
}

impl AzureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AzureCode::AuthenticationFailed => "AuthenticationFailed",
            AzureCode::BlobNotFound => "BlobNotFound",
            AzureCode::InvalidBlockId => "InvalidBlockId",
            AzureCode::InvalidBlockList => "InvalidBlockList",
            AzureCode::InvalidHeaderValue => "InvalidHeaderValue",
            AzureCode::InvalidQueryParameterValue => "InvalidQueryParameterValue",
            AzureCode::InvalidRange => "InvalidRange",
            AzureCode::InvalidXmlDocument => "InvalidXmlDocument",
            AzureCode::MissingRequiredHeader => "MissingRequiredHeader",
            AzureCode::RequestBodyTooLarge => "RequestBodyTooLarge",
            AzureCode::BlobImmutable => "BlobImmutable",
            AzureCode::BlockListTooLong => "BlockListTooLong",
            AzureCode::InvalidInput => "InvalidInput",
            AzureCode::InternalError => "InternalError",
            AzureCode::ServerBusy => "ServerBusy",
            AzureCode::UnsupportedHttpVerb => "UnsupportedHttpVerb",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            AzureCode::AuthenticationFailed => 403,
            AzureCode::BlobNotFound => 404,
            AzureCode::InvalidRange => 416,
            AzureCode::RequestBodyTooLarge => 413,
            AzureCode::BlobImmutable => 409,
            AzureCode::InternalError => 500,
            AzureCode::ServerBusy => 503,
            AzureCode::UnsupportedHttpVerb => 405,
            AzureCode::InvalidBlockId
            | AzureCode::InvalidBlockList
            | AzureCode::InvalidHeaderValue
            | AzureCode::InvalidQueryParameterValue
            | AzureCode::InvalidXmlDocument
            | AzureCode::BlockListTooLong
            | AzureCode::MissingRequiredHeader
            | AzureCode::InvalidInput => 400,
        }
    }
}

/// Escapes text for an XML element body.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The XML body of an Azure error.
pub fn error_xml(code: AzureCode, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
        code.as_str(),
        escape(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_escapes_message() {
        let x = error_xml(AzureCode::InvalidBlockList, "block <a> & b");
        assert!(x.contains("<Code>InvalidBlockList</Code>"));
        assert!(x.contains("<Message>block &lt;a&gt; &amp; b</Message>"));
        assert_eq!(AzureCode::InvalidRange.http_status(), 416);
    }
}
