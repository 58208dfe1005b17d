//! Azure block ids and the Put Block List XML body.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;
use quick_xml::events::Event;
use quick_xml::Reader;

/// The longest decoded block id Azure allows.
pub const MAX_BLOCK_ID_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockIdError {
    #[error("the block id is empty")]
    Empty,
    #[error("the block id is not base64")]
    NotBase64,
    #[error("the block id decodes to {0} bytes, more than 64")]
    TooLong(usize),
}

/// Checks a block id as Azure does: base64 of at most 64 bytes. The id is kept as
/// the text the client sent, so the block list matches it byte for byte.
pub fn validate_block_id(id: &str) -> Result<(), BlockIdError> {
    if id.is_empty() {
        return Err(BlockIdError::Empty);
    }
    let decoded = STANDARD
        .decode(id)
        .or_else(|_| URL_SAFE.decode(id))
        .map_err(|_| BlockIdError::NotBase64)?;
    if decoded.is_empty() {
        return Err(BlockIdError::Empty);
    }
    if decoded.len() > MAX_BLOCK_ID_BYTES {
        return Err(BlockIdError::TooLong(decoded.len()));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockListError {
    #[error("the block list XML does not parse: {0}")]
    Xml(String),
    #[error("the block list has no <BlockList> root element")]
    NoRoot,
    #[error("unexpected element <{0}> in the block list")]
    UnexpectedElement(String),
    #[error("block id {0:?} in the block list: {1}")]
    BadId(String, BlockIdError),
    #[error("the block list names more than {0} blocks")]
    TooMany(usize),
}

/// Parses `<BlockList><Latest>id</Latest>...</BlockList>` into the ordered ids.
/// `Committed` and `Uncommitted` are read like `Latest`: "this staged block".
pub fn parse_block_list(xml: &[u8], max_blocks: usize) -> Result<Vec<String>, BlockListError> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut ids = Vec::new();
    let mut depth = 0usize;
    let mut saw_root = false;
    let mut current: Option<String> = None;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| BlockListError::Xml(e.to_string()))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match (depth, name.as_str()) {
                    (0, "BlockList") => saw_root = true,
                    (1, "Latest" | "Committed" | "Uncommitted") => current = Some(String::new()),
                    _ => return Err(BlockListError::UnexpectedElement(name)),
                }
                depth += 1;
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match (depth, name.as_str()) {
                    (0, "BlockList") => saw_root = true,
                    (1, "Latest" | "Committed" | "Uncommitted") => {
                        return Err(BlockListError::BadId(String::new(), BlockIdError::Empty))
                    }
                    _ => return Err(BlockListError::UnexpectedElement(name)),
                }
            }
            Event::Text(t) => {
                if let Some(cur) = current.as_mut() {
                    let text = t
                        .unescape()
                        .map_err(|e| BlockListError::Xml(e.to_string()))?;
                    cur.push_str(&text);
                } else if depth > 0 {
                    return Err(BlockListError::Xml("text outside a block element".into()));
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    if let Some(id) = current.take() {
                        validate_block_id(&id).map_err(|e| BlockListError::BadId(id.clone(), e))?;
                        if ids.len() >= max_blocks {
                            return Err(BlockListError::TooMany(max_blocks));
                        }
                        ids.push(id);
                    }
                }
            }
            Event::Eof => break,
            Event::CData(_) => return Err(BlockListError::Xml("CDATA is not allowed".into())),
            Event::DocType(_) => return Err(BlockListError::Xml("DOCTYPE is not allowed".into())),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err(BlockListError::NoRoot);
    }
    if depth != 0 {
        return Err(BlockListError::Xml("unclosed element".into()));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids() {
        assert!(validate_block_id("AAAA").is_ok());
        assert!(validate_block_id(&STANDARD.encode([7u8; 64])).is_ok());
        assert_eq!(
            validate_block_id(&STANDARD.encode([7u8; 65])),
            Err(BlockIdError::TooLong(65))
        );
        assert_eq!(validate_block_id("!!!"), Err(BlockIdError::NotBase64));
        assert_eq!(validate_block_id(""), Err(BlockIdError::Empty));
    }

    #[test]
    fn parses_latest_committed_uncommitted_in_order() {
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
            <BlockList><Latest>QQ==</Latest><Uncommitted>Qg==</Uncommitted><Committed>Qw==</Committed><Latest>QQ==</Latest></BlockList>"#;
        assert_eq!(
            parse_block_list(xml, 100).unwrap(),
            vec!["QQ==", "Qg==", "Qw==", "QQ=="]
        );
    }

    #[test]
    fn empty_list_is_allowed() {
        assert_eq!(
            parse_block_list(b"<BlockList/>", 10).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parse_block_list(b"<BlockList></BlockList>", 10).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn rejects_bad_lists() {
        assert!(parse_block_list(b"", 10).is_err());
        assert!(parse_block_list(b"<Other/>", 10).is_err());
        assert!(parse_block_list(b"<BlockList><Latest>!!</Latest></BlockList>", 10).is_err());
        assert!(parse_block_list(b"<BlockList><Latest>QQ==</Latest>", 10).is_err());
        assert!(parse_block_list(b"<BlockList><Foo>QQ==</Foo></BlockList>", 10).is_err());
        assert!(parse_block_list(b"<BlockList><Latest><X/></Latest></BlockList>", 10).is_err());
        assert_eq!(
            parse_block_list(
                b"<BlockList><Latest>QQ==</Latest><Latest>QQ==</Latest></BlockList>",
                1
            ),
            Err(BlockListError::TooMany(1))
        );
    }
}
