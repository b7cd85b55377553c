package dev.trackd.client;

/** A flag variable was read with a getter of another type than its own. */
public final class VariableTypeException extends ClassCastException {
  private static final long serialVersionUID = 1L;

  VariableTypeException(String message) {
    super(message);
  }
}
