//! A component's configuration as the host resolved it at start: what a
//! guest of that component may read and reach.

use std::collections::HashMap;

use crate::allowed_hosts::AllowedHosts;

/// A component's configuration, resolved once at start.
#[derive(Debug)]
pub struct ComponentConfig {
    pub id: String,
    /// The component's `variables` table with templates expanded; an `Err`
    /// holds the message a guest gets when it reads that variable.
    pub variables: HashMap<String, Result<String, String>>,
    pub key_value_stores: Vec<String>,
    pub allowed_hosts: AllowedHosts,
    pub environment: Vec<(String, String)>,
}
