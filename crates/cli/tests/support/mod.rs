//! What the role-process tests share.

#![allow(unreachable_pub)]

pub mod controller;
