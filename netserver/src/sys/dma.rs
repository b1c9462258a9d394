//! The generator backend's stand-in for a NIC's DMA: one write of a frame's
//! bytes into a client's exchange-region frame through the [`RawFrame`]
//! range the server holds (the same range a zero-copy `recv` hands the
//! kernel).

use exchange::server::RawFrame;

/// Writes `bytes` (cut to the frame's length) at the start of `frame`;
/// returns how many bytes were written.
pub fn write_frame(frame: &RawFrame, bytes: &[u8]) -> usize {
    let n = bytes.len().min(frame.len());
    // SAFETY: `RawFrame` guarantees `as_ptr()..as_ptr()+len()` lies inside a
    // mapping that it keeps alive, for a frame the server holds (the
    // `ServerFrame` it was made from); `n ≤ len()`. No Rust reference exists
    // over that shared memory (`RawFrame`'s contract), so this write aliases
    // nothing in this process, and `bytes` is private memory, so the ranges
    // do not overlap. A concurrent write by the client process only harms
    // that client.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), frame.as_ptr(), n) };
    n
}
