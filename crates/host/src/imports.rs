//! Lists every import of a component that the host's linker cannot satisfy,
//! so a start-up failure names all of them at once instead of the first.

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};

/// The names of `component`'s imports that `linker` does not provide (or
/// provides with a different type), in the order wasmtime checks them.
pub fn unsatisfied<T: 'static>(linker: &Linker<T>, component: &Component) -> Vec<String> {
    let engine = linker.engine().clone();
    let mut probe = linker.clone();
    probe.allow_shadowing(true);
    let mut missing = Vec::new();
    // Each round finds one more missing import and stubs it, so the loop ends
    // after at most one round per import.
    let imports = component.component_type().imports(&engine).count();
    for _ in 0..=imports {
        let Err(error) = probe.instantiate_pre(component) else {
            break;
        };
        let error = anyhow::Error::from(error);
        let Some(name) = import_name(&error) else {
            missing.push(format!("{error:#}"));
            break;
        };
        if missing.contains(&name) || stub(&mut probe, component, &name).is_err() {
            missing.push(name);
            break;
        }
        missing.push(name);
    }
    missing
}

/// Wasmtime reports "component imports instance `NAME`, but a matching implementation was not found".
fn import_name(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        let text = cause.to_string();
        let rest = text.strip_prefix("component imports ")?;
        let start = rest.find('`')? + 1;
        let len = rest[start..].find('`')?;
        Some(rest[start..start + len].to_string())
    })
}

fn stub<T: 'static>(linker: &mut Linker<T>, component: &Component, name: &str) -> anyhow::Result<()> {
    let engine = linker.engine().clone();
    let component_type = component.component_type();
    let item = component_type
        .get_import(&engine, name)
        .ok_or_else(|| anyhow::anyhow!("no import {name}"))?;
    match item.ty {
        ComponentItem::ComponentInstance(instance) => {
            let mut root = linker.root();
            let mut stubbed = root.instance(name)?;
            for (export, item) in instance.exports(&engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => {
                        stubbed.func_new(export, |_, _, _, _| Err(wasmtime::Error::msg("not provided by this host")))?
                    }
                    ComponentItem::Resource(_) => {
                        stubbed.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?
                    }
                    _ => {}
                }
            }
        }
        ComponentItem::ComponentFunc(_) => {
            linker.root().func_new(name, |_, _, _, _| Err(wasmtime::Error::msg("not provided by this host")))?
        }
        _ => anyhow::bail!("cannot stub {name}"),
    }
    Ok(())
}
