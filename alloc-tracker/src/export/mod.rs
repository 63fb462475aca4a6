//! Renderings of a [`crate::Report`]: text for the terminal and the stable JSON.

pub mod json;
pub mod text;
