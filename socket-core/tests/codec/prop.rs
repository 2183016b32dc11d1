//! codec_prop
