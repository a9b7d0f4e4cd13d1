//! The bounds on what a message may make this crate allocate or walk.
//! A message arrives from any sender, so every size and count the parser
//! and the splitter depend on is named here and refused in `parse::check_limits`
//! or `split` with its own error; `error` says which limit was hit.

/// A whole message as the user sends or reads it: 64 MiB. Large enough for
/// the attachments people mail each other (providers stop at 25–50 MB),
/// small enough that one message held in memory at once is harmless.
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// A message after its large parts were split out (`split`): 2 MiB. The
/// stored message travels in one 4 MiB network frame together with its
/// envelope and signatures, so half a frame leaves room to spare.
pub const STORED_BYTES_MAX: usize = 2 << 20;

/// Header fields in one header block (the message's or one MIME part's):
/// 1000. Real mail carries tens; long Received chains reach a few hundred.
pub const HEADER_FIELDS_MAX: usize = 1000;

/// The message's top-level header section in bytes: 256 KiB. The headers
/// stay in the stored message and in the mailbox index, so they must stay
/// far below `STORED_BYTES_MAX`.
pub const HEADER_BYTES_MAX: usize = 256 << 10;

/// Nesting of multiparts and attached messages: 16. Real mail nests three
/// or four deep (mixed > alternative > related); deeper is an attack on
/// whoever walks the tree.
pub const MIME_DEPTH_MAX: usize = 16;

/// MIME parts in one message, nested messages included: 1000. Each part
/// costs an index entry and a walk; a thousand attachments is already absurd.
pub const MIME_PARTS_MAX: usize = 1000;

/// Leaf bodies at least this big (64 KiB, as transfer-encoded in the
/// message) become floating attachments. Smaller ones stay inline: a cut
/// costs a hash, an attachment record and a fetch, which only pays off
/// for bodies well above the size of the headers around them.
pub const SPLIT_PART_BYTES_MIN: usize = 64 << 10;

/// Leaf bodies down to this size (1 KiB) may still be cut when the stored
/// message would otherwise exceed `STORED_BYTES_MAX`.
pub const SPLIT_PART_BYTES_FLOOR: usize = 1 << 10;

/// The preview a mailbox index keeps of the text body: 4 KiB, enough for a
/// list view and a search snippet without holding the body twice.
pub const PREVIEW_BYTES_MAX: usize = 4096;
