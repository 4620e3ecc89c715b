//! What a message may contain before it is typed into an agent's pane.
//!
//! Messages are pasted, never typed as key names, so `C-c` or `Enter` in a
//! message arrive as letters. Control characters are the one thing a paste
//! could still smuggle in (an ESC could end the bracketed paste early), so we
//! refuse them with an error that says where they are, instead of guessing a
//! visible form the sender did not ask for.

/// The largest message we deliver, in bytes of UTF-8.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Why a message cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Nothing to deliver.
    #[error("message is empty; nothing to deliver")]
    Empty,
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message is {len} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (send a file path instead of the file)")]
    TooLarge {
        /// The message's size in bytes.
        len: usize,
    },
    /// Fits alone, but not with the header typed before it (see
    /// [`check_typed_size`]).
    #[error("message is {len} bytes and arrives after a header of up to {header} bytes; together that is over the limit of {MAX_MESSAGE_BYTES} bytes an agent takes (shorten it by {} bytes, or send a file path instead of the file)", .len + .header - MAX_MESSAGE_BYTES)]
    TooLargeWithHeader {
        /// The message's size in bytes.
        len: usize,
        /// The size of the header typed before it.
        header: usize,
    },
    /// Holds a control character other than newline or tab.
    #[error("message contains control character U+{code:04X} at byte {offset}; only newline and tab are allowed, remove it or write it out (e.g. \\x1b)")]
    ControlChar {
        /// The character's code point.
        code: u32,
        /// Its byte offset in the message.
        offset: usize,
    },
}

/// Checks a message and returns it normalised for the pane (CRLF becomes LF).
pub fn validate_message(text: &str) -> Result<String, MessageError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(MessageError::TooLarge { len: text.len() });
    }
    let text = text.replace("\r\n", "\n");
    if text.trim().is_empty() {
        return Err(MessageError::Empty);
    }
    if let Some((offset, ch)) = text
        .char_indices()
        .find(|&(_, c)| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(MessageError::ControlChar {
            code: ch as u32,
            offset,
        });
    }
    Ok(text)
}

/// Checks that `text` still fits [`MAX_MESSAGE_BYTES`] once a header of
/// `header` bytes is typed before it: the supervisor applies the limit to
/// what it types, header included.
pub fn check_typed_size(text: &str, header: usize) -> Result<(), MessageError> {
    if text.len() + header > MAX_MESSAGE_BYTES {
        return Err(MessageError::TooLargeWithHeader {
            len: text.len(),
            header,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_and_shell_text_pass_literally() {
        for t in [
            "C-c",
            "Enter",
            "; rm -rf /",
            "$(id)",
            "'\"`",
            "héllo ✓",
            "a\n\tb",
        ] {
            assert_eq!(validate_message(t).unwrap(), t);
        }
    }

    #[test]
    fn crlf_is_normalised() {
        assert_eq!(validate_message("a\r\nb").unwrap(), "a\nb");
    }

    #[test]
    fn control_characters_are_refused_with_their_place() {
        assert_eq!(
            validate_message("ab\x1b[201~"),
            Err(MessageError::ControlChar {
                code: 0x1b,
                offset: 2
            })
        );
        assert!(validate_message("a\rb").is_err());
        assert!(validate_message("a\u{7f}").is_err());
        assert!(validate_message("a\u{85}").is_err());
    }

    #[test]
    fn size_and_emptiness_are_checked() {
        assert_eq!(validate_message(" \n"), Err(MessageError::Empty));
        let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
        assert!(matches!(
            validate_message(&big),
            Err(MessageError::TooLarge { .. })
        ));
        assert!(validate_message(&"x".repeat(64 * 1024)).is_ok());
    }

    #[test]
    fn the_header_counts_against_the_limit() {
        let text = "x".repeat(MAX_MESSAGE_BYTES - 10);
        assert!(check_typed_size(&text, 10).is_ok());
        let e = check_typed_size(&text, 40).unwrap_err();
        assert_eq!(
            e,
            MessageError::TooLargeWithHeader {
                len: MAX_MESSAGE_BYTES - 10,
                header: 40
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("262144") && msg.contains("by 30 bytes"),
            "{msg}"
        );
    }
}
