//! Upload-time checks on a handler binary: size, "is it a component at
//! all", the compile budget (functions, body size, block nesting), and the
//! import allow-list (WASI 0.2.x, plus the `hookbox:handler/*@0.1.x`
//! interfaces and only the functions Hookbox 0.1.0 provides). Each refusal
//! names what is wrong so that a handler author can fix it without reading
//! Hookbox's source. Capabilities are granted by use, not by import: an
//! import of an ungranted Hookbox interface is accepted and listed by
//! [`denied_imports`] (its functions end the delivery with
//! `capability_denied` when called, see `host.rs`); allowed WASI imports
//! wasmtime-wasi does not implement are linked as denied the same way
//! ([`link_denied_imports`]).

use std::collections::BTreeSet;

use wasmparser::{Operator, Parser, Payload};
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};

use super::RuntimeError;
use super::host::HostState;
use super::outcome::Outcome;
use crate::manifest::Capability;

/// `\0asm`, the first four bytes of every WebAssembly binary.
const MAGIC: &[u8; 4] = b"\0asm";
/// Version and layer of a core module (version 1, layer 0).
const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
/// Version and layer of a component binary (version 0xd, layer 1).
const COMPONENT: [u8; 4] = [0x0d, 0, 1, 0];

/// The package whose interfaces Hookbox implements, and the version it serves.
const PACKAGE: &str = "hookbox:handler";
const PACKAGE_MAJOR_MINOR: (u64, u64) = (0, 1);
/// Functions of each interface of `hookbox:handler@0.1.0`. A guest built
/// against a later 0.1.x that imports a function not listed here is refused
/// at upload instead of trapping at its first call.
const INTERFACES: &[(&str, &[&str])] = &[
    ("types", &[]),
    ("log", &["log"]),
    (
        "kv",
        &["get", "set", "delete", "increment", "compare-and-swap"],
    ),
    ("config", &["get"]),
    ("emit", &["emit"]),
    ("clock", &["now-ms"]),
];

/// The WASI packages `wasmtime_wasi::p2::add_to_linker_sync` links: all of
/// WASI 0.2 except `wasi:http`. Imports of these (and of [`PACKAGE`]) are
/// never linked as denied, whatever their 0.2.x patch version.
const WASI_LINKED: &[&str] = &[
    "wasi:io",
    "wasi:clocks",
    "wasi:random",
    "wasi:cli",
    "wasi:filesystem",
    "wasi:sockets",
];

/// Size cap and binary kind, checked before spending time compiling.
pub(crate) fn check_binary(wasm: &[u8], max_bytes: usize) -> Result<(), RuntimeError> {
    if wasm.len() > max_bytes {
        return Err(RuntimeError::TooLarge {
            size: wasm.len(),
            max: max_bytes,
        });
    }
    if wasm.len() < 8 || &wasm[..4] != MAGIC {
        return Err(RuntimeError::NotWasm);
    }
    let header: [u8; 4] = wasm[4..8].try_into().expect("slice of 4");
    if header == CORE_MODULE {
        return Err(RuntimeError::CoreModule);
    }
    if header != COMPONENT {
        return Err(RuntimeError::Invalid(format!(
            "unsupported WebAssembly binary version/layer {header:02x?}; Hookbox runs components of the component model (version 0x0d, layer 1)"
        )));
    }
    Ok(())
}

/// The compile budget. Cranelift compiles a component at upload, on the
/// daemon's CPUs, and its time grows with the number of functions, their
/// size and — quadratically — with block nesting (measured on the 2-core
/// dev box: one function of 10k / 30k / 100k nested blocks took 1.7 s /
/// 12 s / 140 s; 100 000 empty functions 12 s). These caps bound it from a
/// cheap parse, before compiling; what remains grows linearly with the
/// upload size and is bounded by the size cap. Real components sit far
/// below them: StarlingMonkey (JS) 12.7k functions, largest body 171 KB,
/// nesting work 3.9 M; componentize-py 13.4k functions, largest body
/// 427 KB, nesting work 3.3 M (deepest nesting 781); Rust handlers < 1k
/// functions and 0.1 M.
pub(crate) const MAX_FUNCTIONS: usize = 50_000;
/// Largest single function body, in bytes.
pub(crate) const MAX_FUNCTION_BYTES: usize = 2 << 20;
/// Nesting work: the sum, over every block, loop and `if` of every
/// function, of its nesting depth. 50 M is one function of 10 000 blocks
/// nested inside each other (≈ 2 s of compiling here).
pub(crate) const MAX_NESTING_WORK: u64 = 50_000_000;

/// Modules and components nested inside each other. wasmparser's
/// validator keeps a snapshot list per nested unit and copies the outer
/// ones into each, so its memory grows with the square of the nesting (one
/// 1.2 MB upload of 100 000 nested empty components took 21 GB). Real
/// components nest 1 (a Rust or JS component holding its core modules) to
/// 3 (a composition of components).
pub(crate) const MAX_NESTING_DEPTH: usize = 16;
/// Core modules and components in one upload, at any depth. A Rust
/// component holds 3–5 core modules; a composition a few dozen.
pub(crate) const MAX_UNITS: usize = 1_000;
/// Sections of every unit together (a module has at most about 13).
pub(crate) const MAX_SECTIONS: usize = 20_000;
/// Entries of every counted section but functions (which have their own
/// cap): core and component types, imports, exports, instances, aliases,
/// canonical functions, globals, tables, memories, tags, element and data
/// segments. Each costs the validator and compiler tens to hundreds of
/// bytes, so a count, not the size cap, must bound them: 50 MiB of 3-byte
/// types would be 16 M of them. Real components hold a few thousand
/// (componentize-py's largest, about 30 000).
pub(crate) const MAX_ITEMS: u64 = 200_000;

/// Checks the compile budget over the whole component: its shape (nesting,
/// units, sections, items) and every core module's code. One pass of
/// wasmparser's parser, which keeps a small stack per nesting level and
/// allocates nothing per item: every count is checked before the
/// validator or compiler pays for it.
pub(crate) fn check_compile_budget(wasm: &[u8]) -> Result<(), RuntimeError> {
    let over = |what: String| {
        Err(RuntimeError::Invalid(format!(
            "the component exceeds the compile budget: {what}"
        )))
    };
    let malformed = |e: wasmparser::BinaryReaderError| RuntimeError::Invalid(e.to_string());
    let mut functions = 0usize;
    let mut nesting_work = 0u64;
    let (mut depth, mut units, mut sections, mut items) = (0usize, 1usize, 0usize, 0u64);
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(malformed)?;
        if payload.as_section().is_some() {
            sections += 1;
            if sections > MAX_SECTIONS {
                return over(format!("more than {MAX_SECTIONS} sections"));
            }
        }
        let count = match &payload {
            Payload::TypeSection(s) => s.count(),
            Payload::ImportSection(s) => s.count(),
            Payload::TableSection(s) => s.count(),
            Payload::MemorySection(s) => s.count(),
            Payload::TagSection(s) => s.count(),
            Payload::GlobalSection(s) => s.count(),
            Payload::ExportSection(s) => s.count(),
            Payload::ElementSection(s) => s.count(),
            Payload::DataSection(s) => s.count(),
            Payload::InstanceSection(s) => s.count(),
            Payload::CoreTypeSection(s) => s.count(),
            Payload::ComponentInstanceSection(s) => s.count(),
            Payload::ComponentAliasSection(s) => s.count(),
            Payload::ComponentTypeSection(s) => s.count(),
            Payload::ComponentCanonicalSection(s) => s.count(),
            Payload::ComponentImportSection(s) => s.count(),
            Payload::ComponentExportSection(s) => s.count(),
            _ => 0,
        };
        items += u64::from(count);
        if items > MAX_ITEMS {
            return over(format!(
                "more than {MAX_ITEMS} types, imports, exports, instances, aliases and other \
                 declarations ({items} so far)"
            ));
        }
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                depth += 1;
                units += 1;
                if depth > MAX_NESTING_DEPTH {
                    return over(format!(
                        "modules and components are nested more than {MAX_NESTING_DEPTH} deep"
                    ));
                }
                if units > MAX_UNITS {
                    return over(format!("more than {MAX_UNITS} modules and components"));
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::FunctionSection(section) => {
                functions = functions.saturating_add(section.count() as usize);
                if functions > MAX_FUNCTIONS {
                    return over(format!(
                        "more than {MAX_FUNCTIONS} functions ({functions} so far)"
                    ));
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > MAX_FUNCTION_BYTES {
                    return over(format!(
                        "a function body is {size} bytes; the limit is {MAX_FUNCTION_BYTES}"
                    ));
                }
                let mut ops = body.get_operators_reader().map_err(malformed)?;
                let mut depth = 0u32;
                while !ops.eof() {
                    match ops.read().map_err(malformed)? {
                        Operator::Block { .. }
                        | Operator::Loop { .. }
                        | Operator::If { .. }
                        | Operator::Try { .. }
                        | Operator::TryTable { .. } => {
                            depth += 1;
                            nesting_work += u64::from(depth);
                            if nesting_work > MAX_NESTING_WORK {
                                return over(format!(
                                    "blocks are nested too deeply: the sum of the nesting depths of \
                                     all blocks passes {MAX_NESTING_WORK} (one function of 10 000 \
                                     blocks nested inside each other reaches it)"
                                ));
                            }
                        }
                        Operator::End => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A parsed interface import name: `ns:pkg/iface@version`.
#[derive(Debug, PartialEq, Eq)]
struct InterfaceName<'a> {
    package: &'a str,
    interface: &'a str,
    version: Option<(u64, u64, &'a str)>,
}

fn parse_name(name: &str) -> Option<InterfaceName<'_>> {
    let (path, version) = match name.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (name, None),
    };
    let (package, interface) = path.split_once('/')?;
    if !package.contains(':') || interface.is_empty() {
        return None;
    }
    let version = match version {
        None => None,
        Some(v) => {
            let mut parts = v.splitn(3, '.');
            let major = parts.next()?.parse().ok()?;
            let minor = parts.next()?.parse().ok()?;
            Some((major, minor, parts.next().unwrap_or("")))
        }
    };
    Some(InterfaceName {
        package,
        interface,
        version,
    })
}

/// Whether an import (by name) may be linked at all (whether it is granted
/// is [`denied_imports`]' question). `Err` holds the reason, phrased to
/// follow "component imports `<name>`: ".
fn check_import_name(name: &str) -> Result<(), String> {
    let Some(parsed) = parse_name(name) else {
        return Err(
            "Hookbox provides only WASI 0.2 and hookbox:handler interfaces, not bare imports"
                .into(),
        );
    };
    if parsed.package.starts_with("wasi:") {
        return match parsed.version {
            Some((0, 2, _)) => Ok(()),
            Some((major, minor, _)) => Err(format!(
                "WASI {major}.{minor} is not supported; Hookbox links WASI 0.2.x"
            )),
            None => {
                Err("unversioned WASI imports are not supported; Hookbox links WASI 0.2.x".into())
            }
        };
    }
    if parsed.package != PACKAGE {
        return Err(format!(
            "package `{}` is not provided by Hookbox (only WASI 0.2 and {PACKAGE}@0.1)",
            parsed.package
        ));
    }
    match parsed.version {
        Some((major, minor, _)) if (major, minor) == PACKAGE_MAJOR_MINOR => {}
        Some((major, minor, _)) => {
            return Err(format!(
                "this host serves {PACKAGE}@0.1.x, not {major}.{minor}; rebuild the handler against world {PACKAGE}/handler@0.1.0"
            ));
        }
        None => {
            return Err(format!(
                "the import must name a version of {PACKAGE} (0.1.x)"
            ));
        }
    }
    if parsed.interface == "types" || Capability::from_interface(parsed.interface).is_some() {
        return Ok(());
    }
    Err(format!("{PACKAGE} has no interface `{}`", parsed.interface))
}

/// The imports (of a component that passed [`check_imports`]) that a
/// handler granted `caps` may not use: Hookbox interfaces whose capability
/// is not granted, and WASI interfaces Hookbox does not provide
/// (`wasi:http`). They are linked anyway; calling one of their functions
/// ends the delivery with `capability_denied`.
pub(crate) fn denied_imports(names: &[String], caps: &BTreeSet<Capability>) -> Vec<String> {
    names
        .iter()
        .filter(|name| match parse_name(name) {
            Some(n) if n.package == PACKAGE => {
                Capability::from_interface(n.interface).is_some_and(|c| !caps.contains(&c))
            }
            _ => !linked_by_host(name),
        })
        .cloned()
        .collect()
}

/// Checks every import of a compiled component; returns the import names.
pub(crate) fn check_imports(
    engine: &Engine,
    component: &Component,
) -> Result<Vec<String>, RuntimeError> {
    let ty = component.component_type();
    let mut names = Vec::new();
    for (name, item) in ty.imports(engine) {
        let refuse = |reason: String| RuntimeError::ForbiddenImport {
            name: name.to_string(),
            reason,
        };
        check_import_name(name).map_err(refuse)?;
        let hookbox_interface = name
            .strip_prefix(PACKAGE)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.split('@').next());
        if let Some(interface) = hookbox_interface {
            let ComponentItem::ComponentInstance(instance) = item.ty else {
                return Err(refuse("expected an interface (instance) import".into()));
            };
            let provided = INTERFACES
                .iter()
                .find(|(iface, _)| *iface == interface)
                .map_or(&[][..], |(_, funcs)| *funcs);
            for (export, item) in instance.exports(engine) {
                if matches!(item.ty, ComponentItem::ComponentFunc(_)) && !provided.contains(&export)
                {
                    return Err(refuse(format!(
                        "function `{export}` is not part of {PACKAGE}@0.1.0"
                    )));
                }
            }
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// The host type of the resources of interfaces linked as denied. No value
/// of it ever exists: every function of those interfaces ends the call.
struct Denied;

/// Whether the host's linker implements the import `name` itself.
fn linked_by_host(name: &str) -> bool {
    parse_name(name).is_some_and(|n| n.package == PACKAGE || WASI_LINKED.contains(&n.package))
}

/// Links every interface `component` imports that the host does not
/// implement (an allowed WASI interface such as `wasi:http/types`, which
/// JavaScript toolchains import) as denied: each function ends the delivery
/// with `capability_denied`, naming itself, and each resource the interface
/// defines gets a host type of its own. A resource the interface only `use`s from an earlier import (say
/// `wasi:http/types` re-exporting `wasi:io/streams`' `input-stream`) is
/// left alone: it must stay the type that import provides, and
/// `Linker::define_unknown_imports_as_traps` fails on it ("mismatched
/// resource types") by defining it anew. Interfaces the host implements are
/// never redefined, so an import of an older 0.2.x patch still reaches
/// wasmtime-wasi through semver matching instead of traps.
pub(crate) fn link_denied_imports(
    linker: &mut Linker<HostState>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    let ty = component.component_type();
    // Resource types of the imports seen so far; imports only refer to
    // types of earlier imports, so the first sighting is the definition.
    let mut seen: Vec<ResourceType> = Vec::new();
    for (name, item) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let mut denied = if linked_by_host(name) {
            None
        } else {
            Some(linker.instance(name)?)
        };
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::Resource(resource) if !seen.contains(&resource) => {
                    seen.push(resource);
                    if let Some(denied) = &mut denied {
                        denied.resource(export, ResourceType::host::<Denied>(), |_, _| Ok(()))?;
                    }
                }
                ComponentItem::ComponentFunc(_) => {
                    if let Some(denied) = &mut denied {
                        let what = format!("{name}#{export}");
                        denied.func_new(export, move |mut store, _, _, _| {
                            Err(store.data_mut().abort(
                                Outcome::CapabilityDenied,
                                format!(
                                    "`{what}` is denied: Hookbox does not provide this interface \
                                     to handlers"
                                ),
                            ))
                        })?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Checks that the component exports a function named `handle` (its type is
/// checked when the bindings are created).
pub(crate) fn check_export(engine: &Engine, component: &Component) -> Result<(), RuntimeError> {
    let ty = component.component_type();
    match ty.get_export(engine, "handle").map(|e| e.ty) {
        Some(ComponentItem::ComponentFunc(_)) => Ok(()),
        Some(_) => Err(RuntimeError::Export(
            "`handle` is exported, but it is not a function".into(),
        )),
        None => {
            let exports: Vec<&str> = ty.exports(engine).map(|(n, _)| n).collect();
            Err(RuntimeError::Export(format!(
                "no export named `handle` (the component exports: {})",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[Capability]) -> BTreeSet<Capability> {
        list.iter().copied().collect()
    }

    #[test]
    fn binary_kinds() {
        let mut core = b"\0asm".to_vec();
        core.extend([1, 0, 0, 0]);
        assert!(matches!(
            check_binary(&core, 100),
            Err(RuntimeError::CoreModule)
        ));
        let msg = RuntimeError::CoreModule.to_string();
        assert!(
            msg.contains("core WebAssembly module") && msg.contains("component"),
            "{msg}"
        );

        let mut comp = b"\0asm".to_vec();
        comp.extend(COMPONENT);
        assert!(check_binary(&comp, 100).is_ok());
        assert!(matches!(
            check_binary(&comp, 7),
            Err(RuntimeError::TooLarge { size: 8, max: 7 })
        ));
        assert!(matches!(
            check_binary(b"hello world", 100),
            Err(RuntimeError::NotWasm)
        ));
        assert!(matches!(
            check_binary(b"\0as", 100),
            Err(RuntimeError::NotWasm)
        ));
        let mut future = b"\0asm".to_vec();
        future.extend([0x0e, 0, 1, 0]);
        assert!(matches!(
            check_binary(&future, 100),
            Err(RuntimeError::Invalid(_))
        ));
    }

    #[test]
    fn only_interfaces_the_host_lacks_are_linked_as_denied() {
        for name in [
            "wasi:io/poll@0.2.9",
            "wasi:io/streams@0.2.12",
            "wasi:sockets/tcp@0.2.0",
            "wasi:cli/stdout@0.2.3",
            "hookbox:handler/kv@0.1.0",
        ] {
            assert!(linked_by_host(name), "{name}");
        }
        for name in [
            "wasi:http/types@0.2.10",
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:keyvalue/store@0.2.0",
        ] {
            assert!(!linked_by_host(name), "{name}");
        }
    }

    #[test]
    fn name_parsing() {
        assert_eq!(
            parse_name("wasi:cli/stdout@0.2.3"),
            Some(InterfaceName {
                package: "wasi:cli",
                interface: "stdout",
                version: Some((0, 2, "3")),
            })
        );
        assert_eq!(parse_name("handle"), None);
        assert_eq!(parse_name("a/b"), None);
        assert_eq!(parse_name("wasi:cli/stdout@x"), None);
        assert_eq!(parse_name("wasi:cli/"), None);
    }

    #[test]
    fn import_table() {
        let table: &[(&str, Result<(), &str>)] = &[
            ("wasi:cli/stdout@0.2.0", Ok(())),
            ("wasi:filesystem/preopens@0.2.9", Ok(())),
            ("wasi:http/types@0.2.0", Ok(())),
            ("wasi:cli/stdout@0.3.0", Err("WASI 0.3")),
            ("wasi:cli/stdout", Err("unversioned")),
            ("hookbox:handler/log@0.1.0", Ok(())),
            ("hookbox:handler/log@0.1.7", Ok(())),
            ("hookbox:handler/types@0.1.0", Ok(())),
            ("hookbox:handler/kv@0.1.0", Ok(())),
            ("hookbox:handler/log@0.2.0", Err("not 0.2")),
            ("hookbox:handler/log", Err("must name a version")),
            ("hookbox:handler/http@0.1.0", Err("no interface `http`")),
            ("evil:net/socket@1.0.0", Err("package `evil:net`")),
            ("evil:net/socket", Err("package `evil:net`")),
            ("connect", Err("bare imports")),
        ];
        for (name, want) in table {
            let got = check_import_name(name);
            match (want, &got) {
                (Ok(()), Ok(())) => {}
                (Err(needle), Err(msg)) => assert!(msg.contains(needle), "{name}: {msg}"),
                _ => panic!("{name}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn ungranted_hookbox_interfaces_and_wasi_http_are_denied() {
        let names: Vec<String> = [
            "wasi:cli/stdout@0.2.0",
            "wasi:http/types@0.2.10",
            "hookbox:handler/types@0.1.0",
            "hookbox:handler/log@0.1.0",
            "hookbox:handler/kv@0.1.0",
            "hookbox:handler/emit@0.1.2",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            denied_imports(&names, &caps(&[Capability::Log])),
            [
                "wasi:http/types@0.2.10",
                "hookbox:handler/kv@0.1.0",
                "hookbox:handler/emit@0.1.2"
            ]
        );
        assert_eq!(
            denied_imports(&names, &Capability::all()),
            ["wasi:http/types@0.2.10"]
        );
        assert_eq!(denied_imports(&names, &caps(&[])).len(), 4);
    }
}
