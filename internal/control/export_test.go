package control

// FilesTaken is how many files passed with listings the clients of this
// process have taken.
func FilesTaken() int64 { return filesTaken.Load() }
