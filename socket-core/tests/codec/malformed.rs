//! codec_malformed
