package config

import (
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/auth/jwtauth"
)

// Access is the identity-and-access part of the serve configuration (YAML
// key "access"), read by internal/auth/access (access.Config is this type).
type Access struct {
	JWT     jwtauth.Config   `json:"jwt" yaml:"jwt"`
	Masking auth.MaskConfig  `json:"masking,omitempty" yaml:"masking"` // laid over auth.DefaultMasking (viewer masked)
	Limits  auth.LimitConfig `json:"limits" yaml:"limits"`
}
