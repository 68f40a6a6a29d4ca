//! `fermyon:spin/variables@2.0.0`: a guest reads only its component's `variables` table.

use crate::bindings::spin_variables::{Error, Host};
use crate::state::HostState;

impl Host for HostState {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        if !crate::manifest::is_valid_variable_name(&name) || name.contains("__") || name.ends_with('_') {
            return Ok(Err(Error::InvalidName(format!(
                "{name:?}: variable names are lower-case letters, digits and single underscores"
            ))));
        }
        Ok(match self.component.variables.get(&name) {
            None => Err(Error::Undefined(format!("no variable for {:?}.{name:?}", self.component.id))),
            Some(Ok(value)) => Ok(value.clone()),
            Some(Err(message)) => Err(Error::Provider(message.clone())),
        })
    }
}
