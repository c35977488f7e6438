// Package controllers holds the ModelRollout reconciler.
package controllers
