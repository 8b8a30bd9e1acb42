package httpapi

// Suspensions over HTTP (package suspend): the same store and the same
// request as the control socket's, so `sluice queue suspend` and the API
// cannot drift apart.
//
//	GET    /api/v1/suspensions        the suspensions in force
//	POST   /api/v1/suspensions        {"select": "domain=*.example.com", "for": "2h", "reason": "…"}
//	DELETE /api/v1/suspensions/{id}   resume one now
//
// Every change is written to the audit log as user "api" (the token's
// name), interface "http".

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"sluice/internal/audit"
	"sluice/internal/suspend"
)

// tokenUser is the audit log's name for a caller with the API token.
const tokenUser = "api"

func registerSuspensions(mux *router, b Backend) {
	st := b.Suspensions
	if st == nil {
		return
	}
	record := func(w http.ResponseWriter, r *http.Request, e audit.Entry) { auditAs(w, r, b.AuditPath, e) }
	mux.HandleFunc("GET /api/v1/suspensions", func(w http.ResponseWriter, r *http.Request) {
		JSON(w, st.List())
	})
	mux.HandleFunc("POST /api/v1/suspensions", func(w http.ResponseWriter, r *http.Request) {
		var req suspend.Request
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			Error(w, http.StatusBadRequest, "bad request body: "+err.Error())
			return
		}
		x, err := st.Do(req, callerOf(r).User)
		if err != nil {
			Error(w, http.StatusBadRequest, err.Error())
			return
		}
		record(w, r, audit.Entry{Action: "suspend", Selector: x.Selector, Changed: 1, Detail: x.Describe()})
		w.Header().Set("Location", "/api/v1/suspensions/"+strconv.FormatInt(x.ID, 10))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(x)
	})
	mux.HandleFunc("DELETE /api/v1/suspensions/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			Error(w, http.StatusBadRequest, fmt.Sprintf("bad suspension ID %q", r.PathValue("id")))
			return
		}
		x, err := st.Resume(id)
		switch {
		case errors.Is(err, suspend.ErrNotFound):
			record(w, r, audit.Entry{Action: "resume", Skipped: 1, Detail: fmt.Sprintf("suspension %d", id)})
			Error(w, http.StatusNotFound, err.Error())
			return
		case err != nil:
			Error(w, http.StatusInternalServerError, err.Error())
			return
		}
		record(w, r, audit.Entry{Action: "resume", Selector: x.Selector, Matched: 1, Changed: 1, Detail: fmt.Sprintf("suspension %d", x.ID)})
		JSON(w, x)
	})
}
