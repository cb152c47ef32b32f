//! A small XML tree for SOAP responses, and escaping for requests.
//!
//! vSphere answers with namespaced XML whose polymorphic values carry
//! `xsi:type`; vcsim writes that attribute with a non-standard prefix, so the
//! reader resolves attribute namespaces instead of matching prefixes, and
//! keeps `xsi:type` apart from the plain `type` of a ManagedObjectReference.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

const XSI: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

/// An element: its local name, `xsi:type`, other attributes (local names),
/// text and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name, e.g. `returnval`.
    pub name: String,
    /// The `xsi:type` attribute's value without its prefix, e.g. `ArrayOfString`.
    pub xsi_type: Option<String>,
    /// Other attributes by local name, e.g. `("type", "Folder")`.
    pub attributes: Vec<(String, String)>,
    /// The element's own text, unescaped.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The value of attribute `name` (local name).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML at byte {position}: {message}")]
pub struct XmlError {
    /// Byte offset of the problem.
    pub position: u64,
    /// What is wrong.
    pub message: String,
}

/// Parses `xml` into its root element.
pub fn parse(xml: &str) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let error = |reader: &NsReader<&[u8]>, message: String| XmlError {
        position: reader.buffer_position(),
        message,
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| error(&reader, e.to_string()))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let mut element = Element {
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                for attribute in start.attributes() {
                    let attribute = attribute.map_err(|e| error(&reader, e.to_string()))?;
                    let (namespace, local) = reader.resolver().resolve_attribute(attribute.key);
                    let value = attribute
                        .unescape_value()
                        .map_err(|e| error(&reader, e.to_string()))?
                        .into_owned();
                    let local = String::from_utf8_lossy(local.as_ref()).into_owned();
                    match namespace {
                        ResolveResult::Bound(ns) if ns.as_ref() == XSI && local == "type" => {
                            element.xsi_type =
                                Some(value.rsplit(':').next().unwrap_or_default().to_owned());
                        }
                        ResolveResult::Bound(_) => {}
                        _ if attribute.key.as_ref().starts_with(b"xmlns") => {}
                        _ => element.attributes.push((local, value)),
                    }
                }
                let empty = matches!(event, Event::Empty(_));
                if empty {
                    attach(&mut stack, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let done = stack
                    .pop()
                    .ok_or_else(|| error(&reader, "unbalanced end tag".into()))?;
                if stack.is_empty() {
                    return Ok(done);
                }
                attach(&mut stack, done);
            }
            Event::Text(text) => {
                if let Some(current) = stack.last_mut() {
                    current
                        .text
                        .push_str(&text.decode().map_err(|e| error(&reader, e.to_string()))?);
                }
            }
            Event::CData(data) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference
                    .resolve_char_ref()
                    .map_err(|e| error(&reader, e.to_string()))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference
                            .decode()
                            .map_err(|e| error(&reader, e.to_string()))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| error(&reader, format!("unknown entity &{name};")))?
                            .to_owned()
                    }
                };
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&resolved);
                }
            }
            Event::Eof => {
                return Err(error(
                    &reader,
                    "the document ended inside an element".into(),
                ));
            }
            _ => {}
        }
    }
}

fn attach(stack: &mut [Element], element: Element) {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(element);
    }
}

/// `text` with `& < > " '` escaped, for element text and attribute values.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}
