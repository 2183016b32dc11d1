//! codec_decoder
