"""The C source of ``derivex.door_native`` (CPython 3.11+ C API): the ``Door`` type whose
vectorcall methods are an ``Exchange``'s place / cancel / amend, the ``OrderResult`` storage
type, ``SequencerState`` (the sequencer's hot state), and the ``order`` binding. Kept
apart from the build code so that each stays legible; the module docstring of
``derivex.door_native`` says what the methods do."""

from __future__ import annotations

from derivex.core.summary import Ctx

# the context slots the C side reads (core/summary.py: constants only, compiles nothing)
_SLOTS = f"#define CTX_ARENA {int(Ctx.ARENA)}\n#define CTX_LOG {int(Ctx.LOG)}\n"

SOURCE = (
    _SLOTS
    + r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <time.h>

typedef int64_t (*entry_t)(void *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                           int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
static entry_t entry_fn = NULL;

enum { K_PRICE, K_TYPE, K_TIF, K_POST, K_REJECT_POST, K_REDUCE, K_LABEL, K_CLIENT, K_MMP,
       K_COUNT };
static const char *kw_text[K_COUNT] = {"price_ticks", "order_type", "time_in_force",
    "post_only", "reject_post_only", "reduce_only", "label", "client_order_id", "mmp"};
static PyObject *kw_names[K_COUNT];
static PyObject *s_sequencer, *s_fast_door, *s_door_version, *s_engine, *s_arena, *s_clock,
    *s_log, *s_address, *s_order, *s_limit, *s_gtc;
static PyObject *time_ns = NULL;  /* time.time_ns: the default clock, read here in C */

/* derivex.sequencer.Sequencer's base: its seq, ts_ns and batches as int64 fields the
   order methods read and write directly (Python reads them as member descriptors), and
   door_version, which every change of a condition the door depends on bumps (the
   sequencer's engine, hooks and clock; the venue's door, fast_orders, sinks and
   sequencer: derivex.exchange_orders) */
typedef struct {
    PyObject_HEAD
    long long seq, ts_ns, batches, door_version;
} State;

static PyMemberDef State_members[] = {
    {"seq", T_LONGLONG, offsetof(State, seq), 0, "the last sequence number used"},
    {"ts_ns", T_LONGLONG, offsetof(State, ts_ns), 0, "the last sequencer time stamped"},
    {"batches", T_LONGLONG, offsetof(State, batches), 0, "batches processed"},
    {"door_version", T_LONGLONG, offsetof(State, door_version), 0,
     "bumped by every change of a condition the per-command door checks"},
    {NULL, 0, 0, 0, NULL}};

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "derivex_door_native.SequencerState",
    .tp_basicsize = sizeof(State),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The sequencer's hot state (derivex.sequencer.Sequencer's base).",
    .tp_new = PyType_GenericNew,
    .tp_members = State_members,
};

/* OrderResult's storage (its properties are OrderResult's, set on the type from Python):
   not tracked by the cycle collector, since it only refers to a log that never refers
   back: a caller keeping millions of results pays no collection for them */
typedef struct {
    PyObject_HEAD
    PyObject *log;
    long long row;
} Result;
static PyTypeObject *ResultType = NULL;

/* the first entries of a name -> code table, matched by identity before the dict is
   asked (the callers' strings are usually the same interned objects) */
enum { CODES_KEPT = 8 };
typedef struct {
    int count;
    PyObject *names[CODES_KEPT];  /* borrowed: the table (held by the Door) holds them */
    int64_t codes[CODES_KEPT];
} Codes;

typedef struct {
    PyObject_HEAD
    PyObject *exchange, *place, *cancel, *amend;  /* the Python methods, bound */
    PyObject *sides, *types, *tifs;
    int64_t kinds[3], flag_bits[5];
    /* what `ready` found (the venue's _fast_door decides), valid while the sequencer's
       door_version is version_ok and the engine's arena is arena_seen with the context
       still pointing at it (an engine grows by replacing its arena, which no version
       sees: the engine is driven directly too) */
    PyObject *sequencer;  /* a SequencerState; NULL: nothing checked yet */
    long long version_ok;
    PyObject *door_seen, *engine_dict, *clock;
    int clock_default;  /* clock is time.time_ns: read in C */
    int64_t *ctx;
    /* door.arena and door.log as last read, with the context slot each was read beside:
       while the slot is unchanged (OrderDoor.bind and fresh_log rewrite it, and the
       reference kept here keeps the old buffer's address from being reused), so is the
       attribute, and the attribute read is skipped */
    PyObject *arena_seen, *log_seen;
    int64_t arena_address, log_address;
    Codes side_codes, type_codes, tif_codes;
} Door;

static int as_i64(PyObject *o, int64_t *out) {
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
    *out = v;
    return 1;
}

static int kw_index(PyObject *name) {
    for (int k = 0; k < K_COUNT; k++) if (name == kw_names[k]) return k;
    for (int k = 0; k < K_COUNT; k++)
        if (PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, kw_text[k]) == 0)
            return k;
    return -1;
}

static int keep_codes(PyObject *table, Codes *codes) {
    Py_ssize_t pos = 0;
    PyObject *name, *code;
    codes->count = 0;
    while (codes->count < CODES_KEPT && PyDict_Next(table, &pos, &name, &code)) {
        long long value = PyLong_AsLongLong(code);
        if (value == -1 && PyErr_Occurred()) return -1;
        codes->names[codes->count] = name;
        codes->codes[codes->count++] = value;
    }
    return 0;
}

static int code_of(PyObject *table, const Codes *codes, PyObject *name, int64_t *out) {
    for (int k = 0; k < codes->count; k++)
        if (codes->names[k] == name) { *out = codes->codes[k]; return 1; }
    PyObject *code = PyDict_GetItemWithError(table, name);  /* borrowed */
    if (code == NULL) { PyErr_Clear(); return 0; }
    *out = PyLong_AsLongLong(code);
    return 1;
}

/* the engine's arena, borrowed (the engine holds it): from its instance dict, else
   (no dict) its attribute; NULL (no error set) when it has none */
static PyObject *engine_arena(Door *self, PyObject *engine) {
    if (self->engine_dict != NULL) return PyDict_GetItemWithError(self->engine_dict, s_arena);
    PyObject *arena = PyObject_GetAttr(engine, s_arena);
    if (arena == NULL) { PyErr_Clear(); return NULL; }
    Py_DECREF(arena);
    return arena;
}

static void forget(Door *self) {
    Py_CLEAR(self->sequencer); Py_CLEAR(self->engine_dict); Py_CLEAR(self->clock);
}

/* Check (once per change of a condition) that the door may run: the venue's
   _fast_door (the one place that decides, and binds the door to the engine's current
   arena) returns the door, and the sequencer is a SequencerState. Caches what the calls
   after need. 1: the door may run, 0: the Python method decides, -1: an error is set. */
static int ready(Door *self) {
    PyObject *door = NULL, *sequencer = NULL, *o = NULL, *engine = NULL, *arena = NULL;
    int ok = 0;
    forget(self);
    if (entry_fn == NULL) return 0;
    if ((sequencer = PyObject_GetAttr(self->exchange, s_sequencer)) == NULL) return -1;
    if (!PyObject_TypeCheck(sequencer, &StateType)) goto done;
    if ((door = PyObject_CallMethodNoArgs(self->exchange, s_fast_door)) == NULL) goto error;
    if (door == Py_None) goto done;
    /* the version _fast_door approved the conditions at (it reads the live ones) */
    if ((o = PyObject_GetAttr(self->exchange, s_door_version)) == NULL) goto error;
    long long version = PyLong_AsLongLong(o);
    Py_CLEAR(o);
    if (version == -1 && PyErr_Occurred()) goto error;
    if (door != self->door_seen) {
        int64_t address;
        if ((o = PyObject_GetAttr(door, s_address)) == NULL) goto error;
        if (!as_i64(o, &address)) goto done;
        Py_CLEAR(o);
        Py_XSETREF(self->door_seen, Py_NewRef(door));
        self->ctx = (int64_t *)(intptr_t)address;
        Py_CLEAR(self->log_seen);
    }
    if ((engine = PyObject_GetAttr(door, s_engine)) == NULL) goto error;
    if ((arena = PyObject_GetAttr(door, s_arena)) == NULL) goto error;
    if ((o = PyObject_GetAttr(sequencer, s_clock)) == NULL) goto error;
    self->clock_default = o == time_ns;
    self->clock = o;
    o = NULL;
    self->engine_dict = PyObject_GenericGetDict(engine, NULL);
    if (self->engine_dict == NULL) PyErr_Clear();  /* no instance dict: read the attribute */
    if (engine_arena(self, engine) != arena) goto done;
    Py_XSETREF(self->arena_seen, Py_NewRef(arena));
    self->arena_address = self->ctx[CTX_ARENA];
    self->sequencer = Py_NewRef(sequencer);
    self->version_ok = version;
    ok = 1;
    goto done;
error:
    ok = -1;
done:
    if (ok != 1) forget(self);
    Py_XDECREF(door); Py_XDECREF(sequencer); Py_XDECREF(o);
    Py_XDECREF(engine); Py_XDECREF(arena);
    return ok;
}

/* the per-call test: nothing the door depends on changed since `ready` */
static inline int still_ready(Door *self) {
    State *state = (State *)self->sequencer;
    if (state == NULL || state->door_version != self->version_ok) return 0;
    if (self->ctx[CTX_ARENA] != self->arena_address) return 0;
    PyObject *arena;
    if (self->engine_dict != NULL) {
        arena = PyDict_GetItemWithError(self->engine_dict, s_arena);  /* borrowed */
        if (arena == NULL) PyErr_Clear();
    } else {
        arena = NULL;  /* no dict to look in: the full check each call */
    }
    return arena == self->arena_seen;
}

/* The command through the entry point, or NULL with fell_back set when the Python
   method must decide (nothing was changed then). */
static PyObject *run(Door *self, int64_t *f, int *fell_back) {
    /* f: kind, account, instrument, order_id, side, type, tif, flags, price, qty, label */
    int64_t ts, seq;
    *fell_back = 0;
    if (!still_ready(self)) {
        int r = ready(self);
        if (r <= 0) { *fell_back = r == 0; return NULL; }
    }
    State *state = (State *)self->sequencer;
    struct timespec now;
    if (self->clock_default && clock_gettime(CLOCK_REALTIME, &now) == 0) {
        /* time.time_ns on this platform: the same clock, without the call */
        ts = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    } else {
        PyObject *ts_o = PyObject_CallNoArgs(self->clock);
        if (ts_o == NULL) return NULL;
        ts = PyLong_AsLongLong(ts_o);
        Py_DECREF(ts_o);
        if (ts == -1 && PyErr_Occurred()) return NULL;
        /* a clock is Python code: if it changed what the door depends on, the Python
           method decides (nothing stamped yet) */
        if (!still_ready(self)) { *fell_back = 1; return NULL; }
        state = (State *)self->sequencer;
    }
    if (ts < state->ts_ns) ts = state->ts_ns;  /* sequencer time never steps back */
    state->ts_ns = ts;
    seq = state->seq + 1;
    int64_t row = entry_fn((void *)self->ctx, f[0], seq, ts, f[1], f[2], f[3], f[4], f[5], f[6],
                           f[7], f[8], f[9], f[10]);
    if (row < 0) {  /* a full buffer or a pool to grow: the Python half retries */
        PyObject *result = NULL, *door = Py_NewRef(self->door_seen);
        PyObject *order = PyObject_GetAttr(door, s_order);
        if (order != NULL) {
            PyObject *args = Py_BuildValue("(LLLLLLLLLLLLLL)", (long long)(intptr_t)self->ctx,
                f[0], seq, ts, f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10]);
            if (args != NULL) {
                result = PyObject_CallMethod(self->exchange, "_door_retry", "OLOO", door,
                                             (long long)row, order, args);
                Py_DECREF(args);
            }
            Py_DECREF(order);
        }
        Py_DECREF(door);
        return result;
    }
    state->seq = seq;
    state->batches += 1;
    if (self->log_seen == NULL || self->ctx[CTX_LOG] != self->log_address) {
        int64_t address = self->ctx[CTX_LOG];
        PyObject *log = PyObject_GetAttr(self->door_seen, s_log);
        if (log == NULL) return NULL;
        Py_XSETREF(self->log_seen, log);
        self->log_address = address;
    }
    Result *made = PyObject_New(Result, ResultType);
    if (made == NULL) return NULL;
    made->log = Py_NewRef(self->log_seen);
    made->row = row;
    return (PyObject *)made;
}

#define FALL_BACK(method) PyObject_Vectorcall(self->method, args, nargs, kwnames)

static PyObject *Door_place(Door *self, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    /* kind, account, instrument, order_id, side, type, tif, flags, price, qty, label */
    int64_t f[11] = {self->kinds[0], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    PyObject *type_o = s_limit, *tif_o = s_gtc;
    int fell_back;
    if (nargs < 4 || nargs > 5) return FALL_BACK(place);
    if (nargs == 5 && !as_i64(args[4], &f[8])) return FALL_BACK(place);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *value = args[nargs + i];
        int k = kw_index(PyTuple_GET_ITEM(kwnames, i)), truth;
        if (k == K_TYPE) type_o = value;
        else if (k == K_TIF) tif_o = value;
        else if (k == K_PRICE) {
            if (nargs == 5 || !as_i64(value, &f[8])) return FALL_BACK(place);
        } else if (k == K_LABEL) {
            if (!as_i64(value, &f[10])) return FALL_BACK(place);
        } else if (k >= K_POST && k <= K_MMP) {
            if ((truth = PyObject_IsTrue(value)) < 0) { PyErr_Clear(); return FALL_BACK(place); }
            if (truth) f[7] |= self->flag_bits[k == K_CLIENT ? 3 : k == K_MMP ? 4 : k - K_POST];
        } else return FALL_BACK(place);
    }
    if (!code_of(self->sides, &self->side_codes, args[2], &f[4])
        || !code_of(self->types, &self->type_codes, type_o, &f[5])
        || !code_of(self->tifs, &self->tif_codes, tif_o, &f[6]) || !as_i64(args[0], &f[1])
        || !as_i64(args[1], &f[2]) || !as_i64(args[3], &f[9]))
        return FALL_BACK(place);
    PyObject *result = run(self, f, &fell_back);
    return fell_back ? FALL_BACK(place) : result;
}

/* cancel(account, order_id, *, client_order_id=0) and
   amend(account, order_id, price_ticks, qty_lots, *, client_order_id=0) */
static PyObject *cancel_or_amend(Door *self, PyObject *method, int64_t kind, Py_ssize_t want,
                                 PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    int64_t f[11] = {kind, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    int fell_back;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs != want || nkw > 1) goto fall_back;
    if (nkw == 1) {
        PyObject *value = args[nargs];
        int truth;
        if (kw_index(PyTuple_GET_ITEM(kwnames, 0)) != K_CLIENT) goto fall_back;
        if ((truth = PyObject_IsTrue(value)) < 0) { PyErr_Clear(); goto fall_back; }
        if (!as_i64(value, &f[10])) goto fall_back;
        if (truth) f[7] = self->flag_bits[3];
    }
    if (!as_i64(args[0], &f[1]) || !as_i64(args[1], &f[3])) goto fall_back;
    if (want == 4 && (!as_i64(args[2], &f[8]) || !as_i64(args[3], &f[9]))) goto fall_back;
    PyObject *result = run(self, f, &fell_back);
    if (!fell_back) return result;
fall_back:
    return PyObject_Vectorcall(method, args, nargs, kwnames);
}

static PyObject *Door_cancel(Door *self, PyObject *const *args, size_t nargsf,
                             PyObject *kwnames) {
    return cancel_or_amend(self, self->cancel, self->kinds[1], 2, args,
                           PyVectorcall_NARGS(nargsf), kwnames);
}

static PyObject *Door_amend(Door *self, PyObject *const *args, size_t nargsf,
                            PyObject *kwnames) {
    return cancel_or_amend(self, self->amend, self->kinds[2], 4, args,
                           PyVectorcall_NARGS(nargsf), kwnames);
}

static PyObject *Door_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    Door *self = (Door *)type->tp_alloc(type, 0);
    long long k[3], b[5];
    if (self == NULL) return NULL;
    if (!PyArg_ParseTuple(args, "OOOOO!O!O!(LLL)(LLLLL)", &self->exchange, &self->place,
                          &self->cancel, &self->amend, &PyDict_Type, &self->sides,
                          &PyDict_Type, &self->types, &PyDict_Type, &self->tifs,
                          &k[0], &k[1], &k[2], &b[0], &b[1], &b[2], &b[3], &b[4])) {
        self->exchange = self->place = self->cancel = self->amend = NULL;
        self->sides = self->types = self->tifs = NULL;
        Py_DECREF(self);
        return NULL;
    }
    PyObject **refs[] = {&self->exchange, &self->place, &self->cancel, &self->amend,
                         &self->sides, &self->types, &self->tifs};
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) Py_INCREF(*refs[i]);
    for (int i = 0; i < 3; i++) self->kinds[i] = k[i];
    for (int i = 0; i < 5; i++) self->flag_bits[i] = b[i];
    if (keep_codes(self->sides, &self->side_codes) < 0
        || keep_codes(self->types, &self->type_codes) < 0
        || keep_codes(self->tifs, &self->tif_codes) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int Door_traverse(Door *self, visitproc visit, void *arg) {
    Py_VISIT(self->exchange); Py_VISIT(self->place); Py_VISIT(self->cancel);
    Py_VISIT(self->amend); Py_VISIT(self->sides); Py_VISIT(self->types);
    Py_VISIT(self->tifs); Py_VISIT(self->door_seen); Py_VISIT(self->arena_seen);
    Py_VISIT(self->log_seen); Py_VISIT(self->sequencer); Py_VISIT(self->engine_dict);
    Py_VISIT(self->clock);
    return 0;
}

static int Door_clear(Door *self) {
    Py_CLEAR(self->exchange); Py_CLEAR(self->place); Py_CLEAR(self->cancel);
    Py_CLEAR(self->amend); Py_CLEAR(self->sides); Py_CLEAR(self->types);
    Py_CLEAR(self->tifs); Py_CLEAR(self->door_seen); Py_CLEAR(self->arena_seen);
    Py_CLEAR(self->log_seen); forget(self);
    return 0;
}

static void Door_dealloc(Door *self) {
    PyObject_GC_UnTrack(self);
    Door_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Door_methods[] = {
    {"place", (PyCFunction)(void (*)(void))Door_place, METH_FASTCALL | METH_KEYWORDS,
     "Exchange.place through the door (else the Python method)."},
    {"cancel", (PyCFunction)(void (*)(void))Door_cancel, METH_FASTCALL | METH_KEYWORDS,
     "Exchange.cancel through the door (else the Python method)."},
    {"amend", (PyCFunction)(void (*)(void))Door_amend, METH_FASTCALL | METH_KEYWORDS,
     "Exchange.amend through the door (else the Python method)."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject DoorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "derivex_door_native.Door",
    .tp_basicsize = sizeof(Door),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One Exchange's order methods in C.",
    .tp_new = Door_new,
    .tp_traverse = (traverseproc)Door_traverse,
    .tp_clear = (inquiry)Door_clear,
    .tp_dealloc = (destructor)Door_dealloc,
    .tp_methods = Door_methods,
};

static PyMemberDef Result_members[] = {
    {"_log", T_OBJECT_EX, offsetof(Result, log), READONLY, NULL},
    {"_row", T_LONGLONG, offsetof(Result, row), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}};

static void Result_dealloc(Result *self) {
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->log);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyType_Slot Result_slots[] = {
    {Py_tp_dealloc, Result_dealloc},
    {Py_tp_members, Result_members},
    {Py_tp_doc, "derivex.results.OrderResult, as the C order methods make it."},
    {0, NULL}};

static PyType_Spec Result_spec = {"derivex.door_native.OrderResult", sizeof(Result), 0,
                                  Py_TPFLAGS_DEFAULT, Result_slots};

static PyObject *bind_entry(PyObject *module, PyObject *address) {
    long long value = PyLong_AsLongLong(address);
    if (value == -1 && PyErr_Occurred()) return NULL;
    entry_fn = (entry_t)(intptr_t)value;
    Py_RETURN_NONE;
}

static PyObject *order(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    int64_t v[14];
    if (nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "order takes 14 integers");
        return NULL;
    }
    if (entry_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no entry point bound");
        return NULL;
    }
    for (int i = 0; i < 14; i++) {
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred()) return NULL;
    }
    return PyLong_FromLongLong(entry_fn((void *)(intptr_t)v[0], v[1], v[2], v[3], v[4], v[5],
                                        v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13]));
}

static PyMethodDef module_methods[] = {
    {"bind_entry", bind_entry, METH_O, "Set the entry point's address (once)."},
    {"order", (PyCFunction)(void (*)(void))order, METH_FASTCALL,
     "The entry point: order(ctx, kind, seq, ts_ns, account, instrument, order_id, side, "
     "order_type, tif, flags, price_ticks, qty_lots, label) -> row or NEED_*."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "MODULE_NAME", NULL, -1,
                                        module_methods};

#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC INIT_NAME(void) {
    INTERN(s_sequencer, "_sequencer"); INTERN(s_fast_door, "_fast_door");
    INTERN(s_door_version, "_door_version"); INTERN(s_engine, "engine");
    INTERN(s_arena, "arena"); INTERN(s_clock, "clock"); INTERN(s_log, "log");
    INTERN(s_address, "address"); INTERN(s_order, "order"); INTERN(s_limit, "limit");
    INTERN(s_gtc, "gtc");
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL) return NULL;
    time_ns = PyObject_GetAttrString(time_module, "time_ns");
    Py_DECREF(time_module);
    if (time_ns == NULL) return NULL;
    for (int k = 0; k < K_COUNT; k++) INTERN(kw_names[k], kw_text[k]);
    if (PyType_Ready(&DoorType) < 0 || PyType_Ready(&StateType) < 0) return NULL;
    if ((ResultType = (PyTypeObject *)PyType_FromSpec(&Result_spec)) == NULL) return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) return NULL;
    Py_INCREF(&DoorType);
    if (PyModule_AddObject(module, "Door", (PyObject *)&DoorType) < 0) {
        Py_DECREF(&DoorType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&StateType);
    if (PyModule_AddObject(module, "SequencerState", (PyObject *)&StateType) < 0) {
        Py_DECREF(&StateType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(ResultType);
    if (PyModule_AddObject(module, "OrderResult", (PyObject *)ResultType) < 0) {
        Py_DECREF(ResultType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
"""
)
