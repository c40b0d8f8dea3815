//! The exceptions: `pymortem.Error` and its subclasses, from the crate's
//! [`pymortem::Error`].

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    pymortem,
    Error,
    PyException,
    "Any error pymortem raises: the input could not be opened or analysed."
);
create_exception!(
    pymortem,
    OpenError,
    Error,
    "The input could not be opened: missing, unreadable, not a core (an empty \
file, random bytes), or a compressed core or bundle that could not be unpacked."
);
create_exception!(
    pymortem,
    NoPython,
    Error,
    "The core holds no CPython runtime pymortem can read; the message says what \
was missing."
);
create_exception!(
    pymortem,
    FreeThreaded,
    NoPython,
    "The interpreter is a free-threaded build (3.13t+), whose object layout \
pymortem does not read yet."
);
create_exception!(
    pymortem,
    ReadError,
    Error,
    "A read of the process's memory failed where a value was needed. \
`.address` is the first address of the read, `.length` its size in bytes, \
`.reason` why it failed (e.g. `not_mapped`, `not_dumped`, `truncated`)."
);
create_exception!(
    pymortem,
    WrongType,
    Error,
    "An object is not of the type an accessor reads (e.g. `items()` of an int). \
`.address` is the object's address, `.expected` and `.found` the type names."
);

/// Add the exceptions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("OpenError", py.get_type::<OpenError>())?;
    m.add("NoPython", py.get_type::<NoPython>())?;
    m.add("FreeThreaded", py.get_type::<FreeThreaded>())?;
    m.add("ReadError", py.get_type::<ReadError>())?;
    m.add("WrongType", py.get_type::<WrongType>())?;
    Ok(())
}

/// `err` with attributes set on its value.
fn with_attrs(err: PyErr, attrs: &[(&str, PyObject)]) -> PyErr {
    Python::with_gil(|py| {
        let value = err.value(py);
        for (name, attr) in attrs {
            // Setting an attribute of a fresh exception does not fail.
            let _ = value.setattr(*name, attr);
        }
    });
    err
}

/// A memory read's failure as `pymortem.ReadError`.
pub fn read_error(e: &pymortem::ReadError) -> PyErr {
    let reason = crate::convert::json(&e.reason);
    let kind = reason
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("unknown")
        .to_string();
    let err = ReadError::new_err(e.to_string());
    Python::with_gil(|py| {
        with_attrs(
            err,
            &[
                (
                    "address",
                    e.addr.into_pyobject(py).unwrap().into_any().unbind(),
                ),
                (
                    "length",
                    e.len.into_pyobject(py).unwrap().into_any().unbind(),
                ),
                (
                    "reason",
                    kind.into_pyobject(py).unwrap().into_any().unbind(),
                ),
            ],
        )
    })
}

/// The crate's error as the matching Python exception.
pub fn to_py(e: pymortem::Error) -> PyErr {
    match &e {
        pymortem::Error::Open(_) => OpenError::new_err(e.to_string()),
        pymortem::Error::Read(read) => read_error(read),
        pymortem::Error::NoPython { .. } => NoPython::new_err(e.to_string()),
        pymortem::Error::FreeThreaded { .. } => FreeThreaded::new_err(e.to_string()),
        pymortem::Error::WrongType {
            address,
            expected,
            found,
        } => {
            let err = WrongType::new_err(e.to_string());
            Python::with_gil(|py| {
                with_attrs(
                    err,
                    &[
                        (
                            "address",
                            address.into_pyobject(py).unwrap().into_any().unbind(),
                        ),
                        (
                            "expected",
                            expected.into_pyobject(py).unwrap().into_any().unbind(),
                        ),
                        (
                            "found",
                            found.into_pyobject(py).unwrap().into_any().unbind(),
                        ),
                    ],
                )
            })
        }
        _ => Error::new_err(e.to_string()),
    }
}

/// `Result<T, pymortem::Error>` into a `PyResult`.
pub trait IntoPy<T> {
    /// The error as a Python exception.
    fn py_err(self) -> PyResult<T>;
}

impl<T, E: Into<pymortem::Error>> IntoPy<T> for Result<T, E> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(|e| to_py(e.into()))
    }
}
