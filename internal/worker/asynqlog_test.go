package worker

import (
	"log/slog"
	"testing"

	"github.com/hibiken/asynq"
)

// asynq's server logs at the level log.level asks for.
func TestAsynqLevelFollowsLogLevel(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  asynq.LogLevel
	}{
		{slog.LevelDebug, asynq.DebugLevel},
		{slog.LevelInfo, asynq.InfoLevel},
		{slog.LevelWarn, asynq.WarnLevel},
		{slog.LevelError, asynq.ErrorLevel},
	}
	for _, tt := range tests {
		if got := asynqLevel(tt.level); got != tt.want {
			t.Errorf("asynqLevel(%s) = %v, want %v", tt.level, got, tt.want)
		}
	}
}
